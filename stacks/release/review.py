"""The manual approval between a stack's change set and its execution."""
from urllib.parse import quote

from aws_cdk import Aws, Stack, aws_sns as sns, pipelines

# The name CDK Pipelines gives the change set it prepares (and later executes).
CHANGE_SET_NAME = "PipelineChange"


def review_url(stack: Stack) -> str:
    """The CloudFormation console, filtered to this stack (then: Change sets -> PipelineChange)."""
    return (f"https://{Aws.REGION}.console.aws.amazon.com/cloudformation/home?region={Aws.REGION}"
            f"#/stacks?filteringText={quote(stack.stack_name)}&filteringStatus=active&viewNested=true")


def approval_step(stack: Stack, topic: sns.ITopic) -> pipelines.ManualApprovalStep:
    return pipelines.ManualApprovalStep(
        "ApproveChangeSet",
        comment=(
            f"Review change set {CHANGE_SET_NAME} of stack {stack.stack_name} before approving: "
            f"open the link, select the stack, Change sets, {CHANGE_SET_NAME}; or run "
            f"`aws cloudformation describe-change-set --stack-name {stack.stack_name} "
            f"--change-set-name {CHANGE_SET_NAME}`. Reject on any unexpected Replacement or Remove."
        ),
        review_url=review_url(stack),
        notification_topic=topic,
    )
