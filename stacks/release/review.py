"""The review between a stack's change set and its execution: a readable diff of what
the change does to the cluster, then a manual approval that links to it.

A change set shows every Kubernetes object as one JSON string per custom resource, so
a NodePool limit, a Job re-creation and an RBAC widening all read `Modify`. The
RenderDiff step prints, for the stack it precedes, every Kubernetes object and Helm
release added, removed or changed between the deployed template and the proposed one
(`python -m tools.rendering diff`), as unified YAML diffs in its build log.
"""
from urllib.parse import quote

from aws_cdk import Aws, Stack, Stage, aws_codebuild as codebuild, aws_iam as iam, aws_sns as sns, pipelines

# The name CDK Pipelines gives the change set it prepares (and later executes).
CHANGE_SET_NAME = "PipelineChange"


def change_set_url(stack: Stack) -> str:
    """The CloudFormation console, filtered to this stack (then: Change sets -> PipelineChange)."""
    return (f"https://{Aws.REGION}.console.aws.amazon.com/cloudformation/home?region={Aws.REGION}"
            f"#/stacks?filteringText={quote(stack.stack_name)}&filteringStatus=active&viewNested=true")


def diff_project_name(pipeline_stack: Stack, stack: Stack) -> str:
    """Fixed, so the approval can link to its build history before the project exists."""
    return f"{pipeline_stack.stack_name}-{stack.stack_name}-diff"


def diff_url(project_name: str) -> str:
    return (f"https://{Aws.REGION}.console.aws.amazon.com/codesuite/codebuild/projects/{project_name}/history"
            f"?region={Aws.REGION}")


def diff_step(pipeline_stack: Stack, stage: Stage, stack: Stack, source: pipelines.IFileSetProducer,
              templates: pipelines.FileSet) -> pipelines.CodeBuildStep:
    proposed = f"cdk.out/{stage.artifact_id}/{stack.template_file}"
    return pipelines.CodeBuildStep(
        "RenderDiff",
        project_name=diff_project_name(pipeline_stack, stack),
        input=source,
        additional_inputs={"cdk.out": templates},
        commands=[
            "python3 -m venv /tmp/review",
            "/tmp/review/bin/pip install -q -r requirements-preflight.txt",
            f"/tmp/review/bin/python -m tools.rendering diff --deployed-stack {stack.stack_name} {proposed}",
        ],
        build_environment=codebuild.BuildEnvironment(build_image=codebuild.LinuxBuildImage.STANDARD_7_0),
        role_policy_statements=[iam.PolicyStatement(
            # DescribeStacks first: a stack that only holds its first change set has no template.
            actions=["cloudformation:DescribeStacks", "cloudformation:GetTemplate"],
            resources=[f"arn:{Aws.PARTITION}:cloudformation:{Aws.REGION}:{Aws.ACCOUNT_ID}:stack/{stack.stack_name}/*"])],
    )


def approval_step(pipeline_stack: Stack, stack: Stack, topic: sns.ITopic) -> pipelines.ManualApprovalStep:
    return pipelines.ManualApprovalStep(
        "ApproveChangeSet",
        comment=(
            f"Review {stack.stack_name}: the link shows the RenderDiff build, whose log lists every Kubernetes "
            f"object and Helm release this change adds, removes or changes, as YAML diffs. Then change set "
            f"{CHANGE_SET_NAME} (CloudFormation console, or `aws cloudformation describe-change-set "
            f"--stack-name {stack.stack_name} --change-set-name {CHANGE_SET_NAME}`). Reject on any "
            f"unexpected Replacement or Remove, and on any Remove of Custom::AWSCDK-EKS-* (it uninstalls)."
        ),
        review_url=diff_url(diff_project_name(pipeline_stack, stack)),
        notification_topic=topic,
    )
