"""The pipeline's Preflight step: `python -m tools.preflight` before the first change
set, with read-only permissions, in a small venv of requirements-preflight.txt. It reads
the Build step's cloud assembly (`--assembly cdk.out`) for what the release will pull and
run: that venv has no aws-cdk-lib to synthesize with."""
from aws_cdk import Aws, Duration, aws_codebuild as codebuild, aws_iam as iam, pipelines

from stacks.release.commands import SYNTH_IMAGE

PREFLIGHT_COMMANDS = (
    "apt-get update -qq && apt-get install -y -qq python3 python3-venv",
    "python3 -m venv /tmp/preflight",
    "/tmp/preflight/bin/pip install -q -r requirements-preflight.txt",
    "/tmp/preflight/bin/pip install -q --no-deps ./model_image",
    "/tmp/preflight/bin/python -m tools.preflight --assembly cdk.out",
)


def preflight_statements(*, connection_arn: str, weights_source: str) -> list[iam.PolicyStatement]:
    statements = [
        # Describe and quota reads have no resource-level permissions.
        iam.PolicyStatement(actions=["ec2:DescribeAvailabilityZones", "ec2:DescribeInstanceTypeOfferings",
                                     "servicequotas:GetServiceQuota"], resources=["*"]),
        iam.PolicyStatement(actions=[f"{connection_arn.split(':')[2]}:GetConnection"], resources=[connection_arn]),
        # The node AMI Karpenter will resolve: public parameters of the deploy region.
        iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[
            f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}::parameter/aws/service/eks/optimized-ami/*"]),
        # The account's Lambda concurrency: an account-level read, no resource to name.
        iam.PolicyStatement(actions=["lambda:GetAccountSettings"], resources=["*"]),
    ]
    return statements + weights_statements(weights_source)


def weights_statements(weights_source: str) -> list[iam.PolicyStatement]:
    """Reading an S3 weights mirror's manifest (none with weightsSource hub)."""
    if not weights_source.startswith("s3://"):
        return []
    bucket, _, prefix = weights_source.removeprefix("s3://").partition("/")
    return [iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"arn:aws:s3:::{bucket}/{prefix.rstrip('/')}/*"]),
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[f"arn:aws:s3:::{bucket}"])]


def preflight_step(source: pipelines.IFileSetProducer, assembly: pipelines.FileSet, *, connection_arn: str,
                   weights_source: str) -> pipelines.CodeBuildStep:
    return pipelines.CodeBuildStep(
        "Preflight",
        input=source,
        additional_inputs={"cdk.out": assembly},
        commands=list(PREFLIGHT_COMMANDS),
        build_environment=codebuild.BuildEnvironment(
            build_image=codebuild.LinuxBuildImage.from_docker_registry(SYNTH_IMAGE)),
        role_policy_statements=preflight_statements(connection_arn=connection_arn, weights_source=weights_source),
        timeout=Duration.minutes(15),
    )
