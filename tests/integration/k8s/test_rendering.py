"""tools.rendering: tokens become placeholders; the CLI writes readable YAML in deploy order."""
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tools import rendering

ROOT = Path(__file__).resolve().parents[3]


def test_tokens_become_readable_placeholders():
    template = {"Resources": {
        "Later": {"Type": rendering.MANIFEST_TYPE, "DependsOn": ["First"], "Properties": {"Manifest": {"Fn::Join": ["", [
            '[{"kind":"ConfigMap","metadata":{"name":"', {"Ref": "Bucket1"}, '"},"data":{"arn":"',
            {"Fn::GetAtt": ["Role2", "Arn"]}, '","az":"', {"Fn::Select": [0, {"Fn::GetAZs": ""}]}, '"}}]',
        ]]}}},
        "First": {"Type": rendering.MANIFEST_TYPE, "Properties": {"Manifest": '[{"kind":"Namespace"}]'}},
        "Other": {"Type": "AWS::S3::Bucket"},
    }}
    first, later = rendering.manifest_resources(template, "S")
    assert [first.logical_id, later.logical_id] == ["First", "Later"]
    (obj,) = later.objects
    assert obj["metadata"]["name"] == "${Ref:Bucket1}"
    assert obj["data"] == {"arn": "${GetAtt:Role2.Arn}", "az": "${Fn::Select}"}


def test_cli_writes_every_object_as_yaml(synthesized, tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.rendering", str(synthesized.outdir), str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("*.yaml"))
    written = [o for f in files for o in yaml.safe_load_all(f.read_text())]
    # Every manifest of every stack's template, read without the renderer: each KubernetesResource's
    # Manifest is a JSON list of objects (tokens aside, which the renderer spells as ${...}).
    expected = set()
    for template in synthesized.outdir.glob("*.template.json"):
        for resource in json.loads(template.read_text())["Resources"].values():
            if resource["Type"] == "Custom::AWSCDK-EKS-KubernetesResource":
                manifest = json.dumps(resource["Properties"]["Manifest"])
                expected |= set(re.findall(r'\\"kind\\":\\"(\w+)\\",\\"metadata\\":\{\\"name\\":\\"([\w.-]+)\\"', manifest))
    got = {(o["kind"], o["metadata"]["name"]) for o in written}
    assert expected and expected <= got, expected - got
    assert {("NodePool", "inf2"), ("Deployment", "sd21-inference"), ("ScaledObject", "sd21-inference"),
            ("Deployment", "sd21-cold-start-metrics")} <= got
    kinds_in_order = [o["kind"] for o in written]
    assert kinds_in_order.index("EC2NodeClass") < kinds_in_order.index("NodePool")


def test_cli_explains_a_missing_synth(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.rendering", str(tmp_path), str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "cdk synth" in result.stderr


def test_diff_shows_what_a_change_does_to_the_cluster(synthesized, application, zero):
    """Default mode deployed, scale-to-zero proposed: the change set says only `Modify`
    on opaque JSON strings; the diff names every object and release and what changed."""
    import json

    deployed = json.loads(synthesized.template_file(application.workload).read_text())
    proposed = zero.template(zero.application.workload)
    text = rendering.diff_templates(deployed, proposed)
    assert "~ changed ScaledObject sd21/sd21-inference" in text
    assert "-  minReplicaCount: 1" in text and "+  minReplicaCount: 0" in text  # the unified YAML diff itself
    assert "+ added Deployment sd21/sd21-gateway" in text
    assert "~ changed Ingress sd21/sd21-inference" in text
    assert "+      name: sd21-gateway" in text
    assert "Deployment sd21/sd21-inference" not in text  # unchanged objects are not listed
    assert "## Helm releases: 0 added, 0 removed, 0 changed, 2 unchanged" in text
    back = rendering.diff_templates(proposed, deployed)
    assert "- removed Deployment sd21/sd21-gateway" in back and "- removed Service sd21/sd21-gateway" in back


def test_first_deploy_diff_adds_everything(synthesized, application):
    import json

    proposed = json.loads(synthesized.template_file(application.cluster).read_text())
    text = rendering.diff_templates({}, proposed)
    assert "0 removed, 0 changed, 0 unchanged" in text and "+ added NodePool -/inf2" in text


# --- the deployed side of RenderDiff, from a stubbed CloudFormation client ----------

def cloudformation_stub(*answers):
    """A real botocore CloudFormation client whose answers are the given (operation, reply)
    pairs, in order; a reply that is an exception's (code, message) is raised as AWS would."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("cloudformation", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    stubber = Stubber(client)
    for operation, reply in answers:
        if isinstance(reply, tuple):
            stubber.add_client_error(operation, service_error_code=reply[0], service_message=reply[1],
                                     http_status_code=400)
        else:
            stubber.add_response(operation, reply)
    stubber.activate()
    return client, stubber


def stack_in(status: str) -> dict:
    return {"Stacks": [{"StackName": "Sd21Cluster", "StackStatus": status,
                        "CreationTime": "2026-12-01T00:00:00Z"}]}


def test_a_stack_that_does_not_exist_yet_has_an_empty_deployed_template():
    client, stubber = cloudformation_stub(
        ("describe_stacks", ("ValidationError", "Stack with id Sd21Cluster does not exist")))
    assert rendering.deployed_template("Sd21Cluster", client) == {}
    stubber.assert_no_pending_responses()


def test_a_stack_holding_only_its_first_change_set_is_never_asked_for_a_template():
    """After Prepare on a first release the stack is REVIEW_IN_PROGRESS: no template exists."""
    client, stubber = cloudformation_stub(("describe_stacks", stack_in("REVIEW_IN_PROGRESS")))
    assert rendering.deployed_template("Sd21Cluster", client) == {}
    stubber.assert_no_pending_responses()  # and GetTemplate was not called: the stub would have failed


def test_an_answer_without_a_template_body_is_an_empty_template():
    client, _ = cloudformation_stub(("describe_stacks", stack_in("UPDATE_COMPLETE")), ("get_template", {}))
    assert rendering.deployed_template("Sd21Cluster", client) == {}


def test_a_deployed_stack_gives_its_original_template():
    body = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}}
    client, stubber = cloudformation_stub(
        ("describe_stacks", stack_in("UPDATE_COMPLETE")),
        ("get_template", {"TemplateBody": json.dumps(body)}))
    assert rendering.deployed_template("Sd21Cluster", client) == body
    stubber.assert_no_pending_responses()


def test_other_cloudformation_errors_are_not_taken_for_a_first_release():
    import pytest
    from botocore.exceptions import ClientError

    client, _ = cloudformation_stub(("describe_stacks", ("AccessDenied", "not authorized to DescribeStacks")))
    with pytest.raises(ClientError, match="AccessDenied"):
        rendering.deployed_template("Sd21Cluster", client)
