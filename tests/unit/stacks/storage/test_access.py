"""Who may touch the model bucket, from the roles' props alone: the compile role writes
under models/ and reads an S3 weights mirror; the serve role reads its model; a gateway
role only at scale to zero."""
import json

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from stacks.storage.access import ModelAccessRoles


def _statements(**props) -> tuple[cdk.Stack, ModelAccessRoles, dict[str, dict[str, dict]]]:
    """{role id fragment: {Sid: statement}}."""
    stack = cdk.Stack(cdk.App(), "Test")
    bucket = s3.Bucket(stack, "Models")
    access = ModelAccessRoles(stack, "ModelAccess", bucket=bucket, **{
        "model_name": "sd21", "weights_source": "hub", "with_gateway": False, **props})
    by_role = {}
    for policy in Template.from_stack(stack).find_resources("AWS::IAM::Policy").values():
        (role,) = policy["Properties"]["Roles"]
        by_role[role["Ref"]] = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    return stack, access, by_role


def _of(stack, role, by_role) -> dict[str, dict]:
    return by_role[stack.get_logical_id(role.node.default_child)]


def test_the_compile_role_writes_models_and_deletes_only_its_temporary_uploads():
    stack, access, by_role = _statements(model_name="my-model")
    compile_ = _of(stack, access.compile_role, by_role)
    assert set(compile_) == {"ListModels", "WriteModels", "CleanUploads"}  # hub weights: no bucket to read
    assert compile_["ListModels"]["Condition"] == {"StringLike": {"s3:prefix": "models/*"}}
    assert "s3:DeleteObject" not in compile_["WriteModels"]["Action"]
    assert compile_["CleanUploads"]["Action"] == "s3:DeleteObject"
    assert json.dumps(compile_["CleanUploads"]["Resource"]).endswith('/models/my-model/.uploads/*"]]}')


def test_the_compile_role_reads_an_s3_weights_mirror_under_its_prefix_only():
    stack, access, by_role = _statements(weights_source="s3://mirror-bucket/weights/sd21/")
    compile_ = _of(stack, access.compile_role, by_role)
    assert compile_["ListWeights"]["Action"] == "s3:ListBucket"
    assert compile_["ListWeights"]["Condition"] == {"StringLike": {"s3:prefix": "weights/sd21/*"}}
    assert compile_["ReadWeights"]["Action"] == "s3:GetObject"
    assert json.dumps(compile_["ReadWeights"]["Resource"]).endswith(':s3:::mirror-bucket/weights/sd21/*"]]}')
    _, _, whole = _statements(weights_source="s3://mirror-bucket")
    (reads,) = [s for role in whole.values() for sid, s in role.items() if sid == "ReadWeights"]
    assert json.dumps(reads["Resource"]).endswith(':s3:::mirror-bucket/*"]]}')


def test_the_serve_role_reads_its_model_and_does_jobs():
    stack, access, by_role = _statements(model_name="my-model")
    serve = _of(stack, access.serve_role, by_role)
    assert set(serve) == {"ListModel", "ReadModel", "WriteJobRequests", "ReadJobs", "WriteJobResults"}
    assert serve["ListModel"]["Condition"] == {"StringLike": {"s3:prefix": "models/my-model/*"}}
    assert serve["ReadModel"]["Action"] == "s3:GetObject"
    assert not any("Delete" in json.dumps(s["Action"]) for s in serve.values())


def test_a_gateway_role_exists_only_with_a_gateway_and_may_only_enqueue():
    _, access, _ = _statements(with_gateway=False)
    assert access.gateway_role is None
    stack, access, by_role = _statements(with_gateway=True)
    assert set(_of(stack, access.gateway_role, by_role)) == {"WriteJobRequests", "ReadJobs"}
    trust = Template.from_stack(stack).to_json()["Resources"][
        stack.get_logical_id(access.gateway_role.node.default_child)]["Properties"]["AssumeRolePolicyDocument"]
    assert {s["Principal"]["Service"] for s in trust["Statement"]} == {"pods.eks.amazonaws.com"}
