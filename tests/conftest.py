"""Shared fixtures: the whole app is synthesized once per test session (each
synth starts a Node/jsii runtime and costs seconds)."""
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

import app as cdk_app  # noqa: E402
from stacks.application import Application  # noqa: E402
from stacks.compliance import fail_on_any_finding  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def logical_id(construct) -> str:
    """Logical id of the CloudFormation resource behind an L1, L2 or L3 construct."""
    while not isinstance(construct, cdk.CfnElement):
        construct = construct.node.default_child
    return cdk.Stack.of(construct).get_logical_id(construct)


@dataclass
class Synthesized:
    application: Application
    assembly: cdk.cx_api.CloudAssembly
    outdir: Path

    def template(self, stack: cdk.Stack) -> Template:
        return Template.from_stack(stack)

    def template_file(self, stack: cdk.Stack) -> Path:
        return self.outdir / stack.template_file


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    """Synthesize the app with default settings, cdk-nag included: a finding
    without an acknowledgment makes app.synth() raise, failing every test."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(context=cdk_app.default_context(), outdir=str(outdir))
    application = cdk_app.build(app)
    assembly = app.synth()
    fail_on_any_finding(str(outdir))  # warnings too
    return Synthesized(application=application, assembly=assembly, outdir=outdir)


@pytest.fixture(scope="session")
def application(synthesized) -> Application:
    return synthesized.application


# --- loopback S3 and tiny weights, shared by the model image and pod tests ---------

TEST_BUCKET = "sd21-test-models"


@pytest.fixture(scope="session")
def s3_env():
    """moto on 127.0.0.1 (S3, CloudWatch, SQS, SNS); env makes every boto3 client (and subprocess) use it."""
    from moto.server import ThreadedMotoServer
    from tools.dev.localstack import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ENDPOINT_URL_CLOUDWATCH": f"http://127.0.0.1:{port}",
        "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{port}",
        "AWS_ENDPOINT_URL_SNS": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {key: os.environ.get(key) for key in [*env, "AWS_PROFILE"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket=TEST_BUCKET)
    yield env
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_client(s3_env):
    import boto3

    return boto3.client("s3")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    from tools.dev.tiny import save_tiny_weights

    return save_tiny_weights(tmp_path_factory.mktemp("tiny-weights"))


# --- the app synthesized once more in scale-to-zero mode (minReplicas 0) --------------

SCALE_TO_ZERO = {"minReplicas": 0, "acceptColdStarts": True}


@dataclass
class SynthesizedMode:
    """One synthesized app, read as the workload's Kubernetes objects and stack templates."""
    application: Application
    outdir: Path

    def template(self, stack) -> dict:
        return json.loads((self.outdir / stack.template_file).read_text())

    @property
    def objects(self) -> list[dict]:
        from tools import rendering

        return rendering.all_objects(rendering.from_template_file(self.outdir / self.application.workload.template_file))

    def one(self, kind: str, name: str) -> dict:
        (match,) = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        return match


@pytest.fixture(scope="session")
def zero(tmp_path_factory) -> SynthesizedMode:
    """The application stacks with minReplicas 0, cdk-nag included (a finding raises)."""
    from stacks.application import build_application
    from stacks.compliance import check_compliance
    from stacks.settings import Settings

    outdir = tmp_path_factory.mktemp("cdk.out.zero")
    context = {**cdk_app.default_context(), **SCALE_TO_ZERO}
    app = cdk.App(context=context, outdir=str(outdir))
    application = build_application(app, Settings.from_context(context))
    check_compliance(app)
    app.synth()
    fail_on_any_finding(str(outdir))
    return SynthesizedMode(application, outdir)


@pytest.fixture(params=["default", "zero"])
def each_mode(request, synthesized) -> SynthesizedMode:
    """The app in each autoscaling mode: minReplicas >= 1 (the default), then 0."""
    if request.param == "zero":
        return request.getfixturevalue("zero")
    return SynthesizedMode(synthesized.application, synthesized.outdir)


def job_resources(name: str, max_attempts: int = 3, visibility_s: int = 120) -> dict[str, str]:
    """A job queue with its dead-letter queue (after max_attempts receives) and a topic, on the
    loopback moto, as the env the pods read: what stacks/workload/jobs/queue.py creates in AWS."""
    import json

    import boto3

    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    dead = sqs.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility_s),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(max_attempts)})})["QueueUrl"]
    topic = sns.create_topic(Name=f"{name}-finished")["TopicArn"]
    return {"SD21_JOBS_QUEUE_URL": queue, "SD21_JOBS_DLQ_URL": dead, "SD21_JOBS_TOPIC_ARN": topic}
