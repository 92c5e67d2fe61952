"""cdk-nag findings on the parts CDK Pipelines generates, each acknowledged on the
construct that raises it, by its exact finding id, with the reason it is accepted."""
from aws_cdk import Stack, aws_codebuild as codebuild, pipelines
from constructs import IConstruct

from stacks.compliance import acknowledge, acknowledge_all, managed_policy, wildcard_findings
from stacks.release.artifacts import ArtifactStore
from stacks.release.image_build import ImageTarget

IAM5 = "AwsSolutions-IAM5"
LOGS = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/codebuild/"
REPORTS = "arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:report-group/"


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of an L2's resource, as cdk-nag prints it."""
    stack = Stack.of(construct)
    return stack.resolve(stack.get_logical_id(construct.node.default_child))


def _child(scope: IConstruct, *path: str) -> IConstruct:
    for name in path:
        scope = scope.node.find_child(name)
    return scope


def acknowledge_release(pipeline: pipelines.CodePipeline, artifacts: ArtifactStore,
                        image_build: pipelines.CodeBuildStep, image: ImageTarget,
                        preflight: pipelines.CodeBuildStep, preflight_weights_statements=()) -> None:
    bucket = logical_id(artifacts.bucket)
    acknowledge_all(
        pipeline,
        [f"{IAM5}[Resource::<{bucket}.Arn>/*]"]
        + [f"{IAM5}[Action::{a}]" for a in ("s3:Abort*", "s3:DeleteObject*", "s3:GetBucket*", "s3:GetObject*",
                                           "s3:List*", "kms:GenerateDataKey*", "kms:ReEncrypt*")],
        "CDK's grants on the pipeline's own artifact bucket and its KMS key (which also encrypts the "
        "approval topic): objects of that one bucket are this pipeline's artifacts, the key is this "
        "pipeline's; the wildcards never reach another bucket or key.",
    )
    # Every CodeBuild project made for a step writes its own logs and test reports.
    for project in _projects(pipeline):
        if project.node.scope.node.id == "Assets":
            continue  # the asset projects share one role, acknowledged below
        name = logical_id(project)
        acknowledge_all(
            project,
            [f"{IAM5}[Resource::{LOGS}<{name}>:*]", f"{IAM5}[Resource::{REPORTS}<{name}>-*]"],
            "CodeBuild's default grant to its own project: the log streams of the project's log group and "
            "report groups named after the project, created at build time.",
        )
    for project in (pipeline.synth_project, preflight.project):
        acknowledge(
            project, "AwsSolutions-CB5",
            "The synth and preflight steps run the Makefile's Python 3.11 on Debian (the tests install Debian's "
            "bubblewrap and chromium) with Node 22; the official node:22-bookworm image from ECR Public is that "
            "environment.",
        )
    acknowledge(
        preflight.project, f"{IAM5}[Resource::*]",
        "The preflight's reads (ec2:DescribeAvailabilityZones, ec2:DescribeInstanceTypeOfferings, "
        "servicequotas:GetServiceQuota, lambda:GetAccountSettings) have no resource-level permissions; "
        "they change nothing.",
    )
    for statement in preflight_weights_statements:
        for resource in statement.resources:
            if resource.endswith("/*"):
                acknowledge(preflight.project, f"{IAM5}[Resource::{resource}]",
                            "s3:GetObject under the weights mirror's own prefix (weightsSource): the preflight "
                            "reads the mirror's manifest, whose key it learns only from the mirror.")
    acknowledge(
        preflight.project,
        f"{IAM5}[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>::parameter/aws/service/eks/optimized-ami/*]",
        "ssm:GetParameter of AWS's public EKS AMI parameters only (the node AMI Karpenter will resolve); "
        "their names carry the Kubernetes and AMI versions, which the settings choose.",
    )
    acknowledge_all(
        image_build.project, wildcard_findings(image_build.project, image.push_statements()),
        "ecr:GetAuthorizationToken has no resource-level permissions (it returns a registry login); "
        "every push action is scoped to the model image repository only.",
    )
    acknowledge_all(
        pipeline.self_mutation_project,
        [f"{IAM5}[Resource::arn:*:iam::<AWS::AccountId>:role/*]", f"{IAM5}[Resource::*]"],
        "CDK Pipelines self-mutation: it may assume only the CDK bootstrap roles of this account (condition on "
        "the aws-cdk:bootstrap-role tag), and needs cloudformation:DescribeStacks and s3:ListBucket, "
        "which CDK's deploy calls on stacks and buckets it discovers at run time.",
    )
    acknowledge_all(
        _child(pipeline, "Assets", "FileRole"),
        [f"{IAM5}[Resource::{LOGS}*]", f"{IAM5}[Resource::{REPORTS}*]", f"{IAM5}[Resource::*]"],
        "CDK Pipelines shares one role among the file-asset publishing projects, whose number follows the "
        "assets: it writes their CodeBuild logs and reports and starts their builds; publishing itself goes "
        "through the CDK bootstrap file-publishing role only.",
    )
    check = _child(pipeline, "PipelinesSecurityCheck")
    approver = _child(check, "CDKPipelinesAutoApprove")
    acknowledge_all(
        _child(check, "CDKSecurityCheck"),
        [f"{IAM5}[Resource::<{logical_id(approver)}.Arn>:*]", f"{IAM5}[Resource::*]"],
        "CDK Pipelines permissions-broadening check: it invokes any version of its own auto-approve function, "
        "and assumes only roles tagged aws-cdk:bootstrap-role=deploy to run `cdk diff` on the stage.",
    )
    acknowledge_all(
        approver,
        [managed_policy("service-role/AWSLambdaBasicExecutionRole"), f"{IAM5}[Resource::*]"],
        "CDK Pipelines' auto-approve function of the permissions check: basic Lambda logging, and it may approve "
        "only pipelines tagged SECURITY_CHECK=ALLOW_APPROVE (condition on the resource tag).",
    )


def _projects(scope: IConstruct) -> list[codebuild.Project]:
    return [c.node.scope for c in scope.node.find_all() if isinstance(c, codebuild.CfnProject)]


def acknowledge_reviews(diff_steps: dict) -> None:
    """The RenderDiff steps read one stack's template each; {step: stack}."""
    for step, stack in diff_steps.items():
        acknowledge(
            step.project,
            f"{IAM5}[Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:"
            f"stack/{stack.stack_name}/*]",
            "cloudformation:DescribeStacks and GetTemplate of this one stack: the wildcard is the stack id CloudFormation assigns "
            "at creation.",
        )
