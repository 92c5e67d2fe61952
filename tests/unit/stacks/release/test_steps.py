"""The pipeline's own steps from their props: the image target's push rights, the
preflight's read-only permissions, and the template fix cfn-lint asks for."""
import json

import aws_cdk as cdk

from stacks.release.image_build import PUSH_ACTIONS, ImageTarget
from stacks.release.preflight_step import preflight_statements, weights_statements
from stacks.release.template_fixes import join_to_sub

CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/abc"


def test_the_image_target_pushes_only_to_its_repository():
    stack = cdk.Stack(cdk.App(), "Test")
    target = ImageTarget(stack, repository_name="sd21/model", compile_tag="compile-1a2b")
    assert (target.name, target.compile_tag) == ("sd21/model", "compile-1a2b")
    assert stack.resolve(target.uri)["Fn::Join"][1][-1].endswith("/sd21/model")
    push, token = target.push_statements()
    assert push.actions == list(PUSH_ACTIONS) and not any("*" in a for a in push.actions)
    assert json.dumps(stack.resolve(push.resources)).endswith(':repository/sd21/model"]]}]')
    assert (token.actions, token.resources) == (["ecr:GetAuthorizationToken"], ["*"])


def test_the_preflight_reads_only_and_uses_the_connection_of_its_own_prefix():
    statements = preflight_statements(connection_arn=CONNECTION, weights_source="hub")
    actions = {a for s in statements for a in s.actions}
    assert actions == {"ec2:DescribeAvailabilityZones", "ec2:DescribeInstanceTypeOfferings",
                       "servicequotas:GetServiceQuota", "codeconnections:GetConnection", "ssm:GetParameter",
                       "lambda:GetAccountSettings"}
    (connection,) = [s for s in statements if "codeconnections:GetConnection" in s.actions]
    assert connection.resources == [CONNECTION]
    legacy = CONNECTION.replace("codeconnections", "codestar-connections")
    assert any("codestar-connections:GetConnection" in s.actions
               for s in preflight_statements(connection_arn=legacy, weights_source="hub"))


def test_the_preflight_reads_an_s3_weights_mirror_under_its_prefix():
    assert weights_statements("hub") == []
    get, list_ = weights_statements("s3://weights-mirror-example/sd21/")
    assert (get.actions, get.resources) == (["s3:GetObject"], ["arn:aws:s3:::weights-mirror-example/sd21/*"])
    assert (list_.actions, list_.resources) == (["s3:ListBucket"], ["arn:aws:s3:::weights-mirror-example"])
    statements = preflight_statements(connection_arn=CONNECTION, weights_source="s3://weights-mirror-example/sd21/")
    assert [s.actions for s in statements[-2:]] == [["s3:GetObject"], ["s3:ListBucket"]]


def test_join_to_sub_rewrites_only_joins_of_literals_refs_and_attributes():
    joined = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Fn::GetAtt": ["Role", "Arn"]}]]}
    assert join_to_sub(joined) == {"Fn::Sub": "arn:${AWS::Partition}:iam::${Role.Arn}"}
    assert join_to_sub({"Fn::Join": [",", ["a", "b"]]}) is None  # a separator: not a plain concatenation
    assert join_to_sub({"Fn::Join": ["", [{"Fn::Select": [0, ["a"]]}]]}) is None
    assert join_to_sub("arn:aws:iam::123:role/x") is None
