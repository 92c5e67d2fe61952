"""The harness's IAM evaluator (tests/support/pods/iam.py) on small hand-written policies and templates:
no subprocess, no synth, no server."""
from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.support.pods.iam import (PolicyError, Request, Session, Statement, Templates, cloudwatch_requests, evaluate,
                            role_statements, s3_requests, sns_requests, sqs_requests)

BUCKET = "arn:aws:s3:::b"
SESSION = Session("us-east-1", {})


def statement(body: dict, resolve=lambda expression: expression) -> Statement:
    return Statement({"Effect": "Allow", **body}, f"Test/{body.get('Sid', '?')}", resolve)


def allowed(statements, action, resource, **context) -> bool:
    return evaluate(statements, Request(action, resource, context)).allowed


# --- evaluation ------------------------------------------------------------------------

def test_an_allow_naming_the_action_and_resource_allows_and_actions_ignore_case():
    policy = [statement({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/models/*"})]
    assert allowed(policy, "s3:getobject", "arn:aws:s3:::b/models/m/x")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::b/jobs/x")
    assert not allowed(policy, "s3:PutObject", "arn:aws:s3:::b/models/m/x")


def test_nothing_allows_by_default():
    assert not allowed([], "s3:GetObject", "arn:aws:s3:::b/k")


def test_an_explicit_deny_wins_over_any_allow():
    policy = [statement({"Action": "s3:*", "Resource": "*"}),
              statement({"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/*"})]
    assert allowed(policy, "s3:PutObject", "arn:aws:s3:::b/k")
    decision = evaluate(policy, Request("s3:DeleteObject", "arn:aws:s3:::b/k"))
    assert not decision.allowed and "explicitly denied" in decision.why


def test_resource_wildcards_are_case_sensitive_and_question_mark_is_one_character():
    policy = [statement({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/jobs/?/status.json"})]
    assert allowed(policy, "s3:GetObject", "arn:aws:s3:::b/jobs/a/status.json")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::b/jobs/ab/status.json")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::b/JOBS/a/status.json")


def test_not_resource_and_not_action_allow_everything_else():
    policy = [statement({"NotAction": "s3:DeleteObject", "NotResource": "arn:aws:s3:::b/secret/*"})]
    assert allowed(policy, "s3:GetObject", "arn:aws:s3:::b/public/k")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::b/secret/k")
    assert not allowed(policy, "s3:DeleteObject", "arn:aws:s3:::b/public/k")


def test_a_prefix_condition_lists_only_under_the_prefix_and_not_without_one():
    policy = [statement({"Action": "s3:ListBucket", "Resource": BUCKET,
                         "Condition": {"StringLike": {"s3:prefix": "models/m/*"}}})]
    assert allowed(policy, "s3:ListBucket", BUCKET, **{"s3:prefix": "models/m/v1/manifest.json"})
    assert not allowed(policy, "s3:ListBucket", BUCKET, **{"s3:prefix": "jobs/"})
    assert not allowed(policy, "s3:ListBucket", BUCKET)  # a missing key fails a positive operator


def test_string_equals_is_exact_and_condition_key_names_ignore_case():
    policy = [statement({"Action": "cloudwatch:PutMetricData", "Resource": "*",
                         "Condition": {"StringEquals": {"CloudWatch:Namespace": "SD21"}}})]
    assert allowed(policy, "cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": "SD21"})
    assert not allowed(policy, "cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": "SD21x"})
    assert not allowed(policy, "cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": "sd21"})


def test_a_negated_operator_holds_when_the_key_is_missing():
    policy = [statement({"Action": "s3:ListBucket", "Resource": BUCKET,
                         "Condition": {"StringNotLike": {"s3:prefix": "secret/*"}}})]
    assert allowed(policy, "s3:ListBucket", BUCKET)
    assert not allowed(policy, "s3:ListBucket", BUCKET, **{"s3:prefix": "secret/x"})


def test_an_operator_the_harness_does_not_know_fails_loudly():
    policy = [statement({"Action": "s3:GetObject", "Resource": "*",
                         "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:*"}}})]
    with pytest.raises(PolicyError, match="ArnLike"):
        allowed(policy, "s3:GetObject", "arn:aws:s3:::b/k")


def test_an_unresolvable_token_fails_when_its_statement_is_needed_and_only_then():
    def resolve(expression):
        if isinstance(expression, str):
            return expression
        raise PolicyError(f"cannot resolve {expression}")

    policy = [statement({"Action": "kms:Decrypt", "Resource": {"Fn::GetAtt": ["Key", "Arn"]}}, resolve),
              statement({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}, resolve)]
    assert allowed(policy, "s3:GetObject", "arn:aws:s3:::b/k")
    with pytest.raises(PolicyError, match="cannot resolve"):
        allowed(policy, "kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/x")


# --- requests -> IAM -------------------------------------------------------------------

def query(text: str) -> dict:
    return urllib.parse.parse_qs(text, keep_blank_values=True)


def test_object_reads_writes_and_deletes_map_to_their_actions():
    key = "arn:aws:s3:::b/models/m/x y"
    assert s3_requests("GET", "/b/models/m/x%20y", query("x-id=GetObject"), {}, "aws") == [Request("s3:GetObject", key)]
    assert s3_requests("HEAD", "/b/models/m/x%20y", {}, {}, "aws") == [Request("s3:GetObject", key)]
    assert s3_requests("PUT", "/b/models/m/x%20y", {}, {}, "aws") == [Request("s3:PutObject", key)]
    assert s3_requests("DELETE", "/b/models/m/x%20y", {}, {}, "aws") == [Request("s3:DeleteObject", key)]


def test_a_presigned_get_is_a_get_object():
    presigned = query("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
                      "&X-Amz-Signature=00&response-content-type=image%2Fpng")
    assert s3_requests("GET", "/b/jobs/1/image.png", presigned, {}, "aws") == [
        Request("s3:GetObject", "arn:aws:s3:::b/jobs/1/image.png")]


def test_a_sigv2_presigned_url_is_an_s3_get_object():
    from tests.support.pods.iam import service_of

    presigned = query("AWSAccessKeyId=testing&Signature=x%3D&Expires=1796404221")
    assert service_of({}, presigned) == "s3"
    assert s3_requests("GET", "/b/jobs/1/image.png", presigned, {}, "aws") == [
        Request("s3:GetObject", "arn:aws:s3:::b/jobs/1/image.png")]


def test_a_listing_is_list_bucket_with_its_prefix_as_the_condition_key():
    (request,) = s3_requests("GET", "/b", query("list-type=2&prefix=models%2Fm%2F&max-keys=1"), {}, "aws")
    assert request == Request("s3:ListBucket", BUCKET, {"s3:prefix": "models/m/", "s3:max-keys": "1"})


def test_a_copy_also_reads_its_source_and_multipart_steps_are_put_or_abort():
    copy = s3_requests("PUT", "/b/models/m/v/a.tar", {}, {"x-amz-copy-source": "b/models/m/.uploads/u/a.tar"}, "aws")
    assert copy == [Request("s3:PutObject", "arn:aws:s3:::b/models/m/v/a.tar"),
                    Request("s3:GetObject", "arn:aws:s3:::b/models/m/.uploads/u/a.tar")]
    assert s3_requests("POST", "/b/k", query("uploads"), {}, "aws")[0].action == "s3:PutObject"
    assert s3_requests("PUT", "/b/k", query("partNumber=1&uploadId=u"), {}, "aws")[0].action == "s3:PutObject"
    assert s3_requests("POST", "/b/k", query("uploadId=u"), {}, "aws")[0].action == "s3:PutObject"
    assert s3_requests("DELETE", "/b/k", query("uploadId=u"), {}, "aws")[0].action == "s3:AbortMultipartUpload"


def test_an_s3_request_the_harness_cannot_map_fails_loudly():
    with pytest.raises(PolicyError):
        s3_requests("GET", "/b/k", query("tagging"), {}, "aws")
    with pytest.raises(PolicyError):
        s3_requests("PUT", "/b", query("policy"), {}, "aws")


def test_sqs_json_calls_name_the_queue_and_batches_authorize_as_their_single_action():
    headers = {"X-Amz-Target": "AmazonSQS.DeleteMessageBatch"}
    body = json.dumps({"QueueUrl": "http://127.0.0.1:5000/123456789012/q", "Entries": []}).encode()
    assert sqs_requests(headers, body, SESSION) == [
        Request("sqs:DeleteMessage", "arn:aws:sqs:us-east-1:123456789012:q")]


def test_sns_publish_names_its_topic_and_cloudwatch_its_namespace():
    topic = "arn:aws:sns:us-east-1:123456789012:t"
    assert sns_requests({}, urllib.parse.urlencode({"Action": "Publish", "TopicArn": topic, "Message": "m"}).encode()) \
        == [Request("sns:Publish", topic)]
    body = json.dumps({"Namespace": "SD21", "MetricData": []}).encode()
    (request,) = cloudwatch_requests({"X-Amz-Target": "GraniteServiceVersion20100801.PutMetricData"}, body)
    assert request == Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "SD21"})


# --- the synthesized output -> a pod's role and its resources -----------------------------

def write_templates(tmp_path) -> Templates:
    """Two stacks as CDK writes them: the role and bucket in one, the association and a policy in the other."""
    storage = {
        "Resources": {
            "Bucket1": {"Type": "AWS::S3::Bucket"},
            "Role1": {"Type": "AWS::IAM::Role", "Properties": {}},
            "Role1Policy": {"Type": "AWS::IAM::Policy", "Properties": {
                "Roles": [{"Ref": "Role1"}], "PolicyDocument": {"Statement": [
                    {"Sid": "ReadModel", "Effect": "Allow", "Action": "s3:GetObject",
                     "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket1", "Arn"]}, "/models/*"]]}}]}}}},
        "Outputs": {
            "RoleArn": {"Value": {"Fn::GetAtt": ["Role1", "Arn"]}, "Export": {"Name": "S:RoleArn"}},
            "RoleRef": {"Value": {"Ref": "Role1"}, "Export": {"Name": "S:RoleRef"}},
            "BucketRef": {"Value": {"Ref": "Bucket1"}, "Export": {"Name": "S:BucketRef"}}}}
    workload = {"Resources": {
        "Queue1": {"Type": "AWS::SQS::Queue"},
        "Key1": {"Type": "AWS::KMS::Key"},
        "Association": {"Type": "AWS::EKS::PodIdentityAssociation", "Properties": {
            "Namespace": "ns", "ServiceAccount": "serve", "RoleArn": {"Fn::ImportValue": "S:RoleArn"}}},
        "Work": {"Type": "AWS::IAM::Policy", "Properties": {
            "Roles": [{"Fn::ImportValue": "S:RoleRef"}], "PolicyDocument": {"Statement": [
                {"Sid": "WorkJobs", "Effect": "Allow", "Action": "sqs:ReceiveMessage",
                 "Resource": {"Fn::GetAtt": ["Queue1", "Arn"]}},
                {"Sid": "Encrypt", "Effect": "Allow", "Action": "kms:Decrypt",
                 "Resource": {"Fn::GetAtt": ["Key1", "Arn"]}},
                {"Sid": "Region", "Effect": "Allow", "Action": "s3:ListBucket",
                 "Resource": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::other"]]}}]}}}}}
    (tmp_path / "S.template.json").write_text(json.dumps(storage))
    (tmp_path / "W.template.json").write_text(json.dumps(workload))
    return Templates(tmp_path)


POD = {"serviceAccountName": "serve", "containers": [{"name": "server", "env": [
    {"name": "SD21_BUCKET", "value": "${ImportValue:S:BucketRef}"},
    {"name": "SD21_JOBS_QUEUE_URL", "value": "${Ref:Queue1}"},
    {"name": "AWS_REGION", "value": "${Ref:AWS::Region}"}]}]}
SUBSTITUTED = {"SD21_BUCKET": "test-bucket", "SD21_JOBS_QUEUE_URL": "http://127.0.0.1:1/123456789012/test-queue"}


def test_the_pods_role_and_its_policies_are_found_through_cross_stack_imports(tmp_path):
    templates = write_templates(tmp_path)
    role = templates.role_of("serve")
    assert role == ("S", "Role1")
    assert [origin for _, origin, _ in templates.policies_of(role)] == ["Role1Policy", "Work"]


def test_the_resources_a_pod_names_stand_for_the_tests_bucket_and_queue(tmp_path):
    templates = write_templates(tmp_path)
    session = Session("us-east-1", templates.bindings(POD, SUBSTITUTED))
    statements = role_statements(templates, templates.role_of("serve"), session)
    assert allowed(statements, "s3:GetObject", "arn:aws:s3:::test-bucket/models/x")
    assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::test-bucket/jobs/x")
    assert allowed(statements, "sqs:ReceiveMessage", "arn:aws:sqs:us-east-1:123456789012:test-queue")
    assert allowed(statements, "s3:ListBucket", "arn:aws:s3:::other")  # a pseudo parameter
    with pytest.raises(PolicyError, match="Key1"):  # no stand-in for the key: loud, not allowed
        allowed(statements, "kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/k")


def test_a_removed_statement_no_longer_allows(tmp_path):
    templates = write_templates(tmp_path)
    session = Session("us-east-1", templates.bindings(POD, SUBSTITUTED))
    statements = role_statements(templates, templates.role_of("serve"), session, frozenset({"ReadModel"}))
    assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::test-bucket/models/x")


def test_a_resource_the_test_did_not_stand_in_for_fails_loudly(tmp_path):
    templates = write_templates(tmp_path)
    session = Session("us-east-1", templates.bindings(POD, {"SD21_BUCKET": "test-bucket"}))
    statements = role_statements(templates, templates.role_of("serve"), session)
    with pytest.raises(PolicyError, match="Queue1"):
        allowed(statements, "sqs:ReceiveMessage", "arn:aws:sqs:us-east-1:123456789012:test-queue")


def test_a_service_account_without_an_association_fails_loudly(tmp_path):
    with pytest.raises(PolicyError, match="nobody"):
        write_templates(tmp_path).role_of("nobody")
