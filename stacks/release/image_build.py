"""The image build step: docker-build model_image/ and push `<repository>:<commit id>`
(the model image) and `<repository>:<commit id>-gateway` (the scale-to-zero gateway).

It runs after the Storage stack of the deploy stage (a `post` step of that stack),
so the repository exists on the very first release; stacks that depend on Storage
(those that run the image) wait for this step, because CDK Pipelines orders a
dependent stack after the whole step group of its dependency.
"""
from aws_cdk import Aws, Duration, Stack, aws_codebuild as codebuild, aws_iam as iam, pipelines

from stacks.release.commands import IMAGE_BUILD_COMMANDS

# Everything `docker push`, the "tag already pushed?" check and the compile tag's copy
# (BatchGetImage reads the manifest, PutImage writes it under the new tag) need.
PUSH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)


class ImageTarget:
    """The model image repository as the pipeline stack sees it: by its fixed name
    (stacks.storage.repository.repository_name) in the pipeline's own account and region
    (where the deploy stage deploys it); `compile_tag` is the tag the release gives the
    model image for the compile Job (stacks.storage.repository.compile_tag)."""

    def __init__(self, stack: Stack, *, repository_name: str, compile_tag: str) -> None:
        self.name = repository_name
        self.compile_tag = compile_tag
        self.arn = stack.format_arn(service="ecr", resource="repository", resource_name=self.name)
        self.registry = f"{Aws.ACCOUNT_ID}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}"
        self.uri = f"{self.registry}/{self.name}"

    def push_statements(self) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(actions=list(PUSH_ACTIONS), resources=[self.arn]),
            # GetAuthorizationToken has no resource-level permissions.
            iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        ]


def image_build_step(target: ImageTarget, source: pipelines.IFileSetProducer) -> pipelines.CodeBuildStep:
    # The source checkout is the primary input: its commit id is the image tag.
    return pipelines.CodeBuildStep(
        "BuildModelImage",
        input=source,
        commands=list(IMAGE_BUILD_COMMANDS),
        env={"REPOSITORY_NAME": target.name, "REPOSITORY_URI": target.uri, "REGISTRY": target.registry,
             "COMPILE_TAG": target.compile_tag},
        build_environment=codebuild.BuildEnvironment(
            build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
            # The Neuron base image is large: room on disk and cores to build it.
            compute_type=codebuild.ComputeType.LARGE,
            privileged=True,
        ),
        role_policy_statements=target.push_statements(),
        timeout=Duration.hours(2),
    )
