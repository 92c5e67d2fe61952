"""The release pipeline (CDK Pipelines, self-mutating):

Source (CodeConnections) -> Build (install, `make test`, `cdk synth -c imageTag=<commit>`)
-> UpdatePipeline -> Assets -> Prod: Preflight (tools/preflight), permissions-broadening
check, then for every
application stack Prepare (change set) -> ApproveChangeSet -> Deploy; the model image
is built and pushed as `<repository>:<commit>` right after the Storage stack (which
owns the repository) and before any stack that depends on Storage.
"""
import json
from pathlib import Path

from aws_cdk import Duration, Stack, Stage, aws_codebuild as codebuild, aws_codepipeline as codepipeline, aws_iam as iam, pipelines
from constructs import Construct
from sd21.artifact import artifact_version

from stacks.application import build_application
from stacks.release.acknowledgments import acknowledge_release, acknowledge_reviews
from stacks.release.artifacts import ArtifactStore
from stacks.release.commands import INSTALL_COMMANDS, SYNTH_COMMANDS, SYNTH_IMAGE
from stacks.release.image_build import ImageTarget, image_build_step
from stacks.release.notifications import ApprovalNotifications
from stacks.release.preflight_step import preflight_step, weights_statements
from stacks.release.review import approval_step, diff_step
from stacks.release.template_fixes import deployment_role_arns_as_sub, pin_security_check_cli
from stacks.settings import Settings
from stacks.storage.repository import compile_tag, repository_name
from stacks.workload.serving.spec import compile_inputs


# The CDK CLI the pipeline's own steps install (self-mutation, security check) is the one
# package.json pins for us; cdk-assets (asset publishing) is pinned here: npm view
# cdk-assets version answered 4.7.3 on 2026-11-28. Unpinned, both would drift to @latest.
PACKAGE_JSON = Path(__file__).resolve().parents[2] / "package.json"
CDK_CLI_VERSION = json.loads(PACKAGE_JSON.read_text())["devDependencies"]["aws-cdk"]
CDK_ASSETS_VERSION = "4.7.3"
# make test (about 10 minutes on a large CodeBuild host) plus setup and synth, with room.
SYNTH_TIMEOUT = Duration.minutes(45)


class DeployStage(Stage):
    """The deploy stage: exactly the application stacks a sandbox `cdk deploy` creates
    (app.py builds them with the same function and the same settings)."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.application = build_application(self, settings)


class PipelineStack(Stack):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, stage_id: str = "Prod", **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.artifacts = ArtifactStore(self, "Artifacts")
        self.notifications = ApprovalNotifications(self, "Approvals", key=self.artifacts.key,
                                                   email=settings.release.approval_notification_email)
        topic = self.notifications.topic

        self.source = pipelines.CodePipelineSource.connection(
            settings.release.pipeline_repository, settings.release.pipeline_branch,
            connection_arn=settings.release.pipeline_connection_arn, trigger_on_push=True,
        )
        self.synth = pipelines.CodeBuildStep(
            "Synth",
            input=self.source,
            install_commands=list(INSTALL_COMMANDS),
            commands=list(SYNTH_COMMANDS),
            primary_output_directory="cdk.out",
            env={"CDK_DISABLE_CLI_TELEMETRY": "true", "CI": "true"},
            build_environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.from_docker_registry(SYNTH_IMAGE),
                # The test suite compiles and serves a tiny model on CPU.
                compute_type=codebuild.ComputeType.LARGE,
                # tests/pods runs our containers under `bwrap --unshare-user`, which Docker's
                # default seccomp profile forbids without CAP_SYS_ADMIN (containers/bubblewrap#505,
                # moby/moby#42441); CodeBuild's privileged mode runs the build container without
                # that filter. CI=true makes those tests fail, not skip, where they cannot run.
                privileged=True,
            ),
            timeout=SYNTH_TIMEOUT,
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            synth=self.synth,
            self_mutation=True,
            use_change_sets=True,
            cross_account_keys=False,
            artifact_bucket=self.artifacts.bucket,
            pipeline_type=codepipeline.PipelineType.V2,
            cli_version=CDK_CLI_VERSION,
            cdk_assets_cli_version=CDK_ASSETS_VERSION,
        )

        self.stage = DeployStage(self, stage_id, settings=settings)
        application = self.stage.application
        self.image = ImageTarget(self, repository_name=repository_name(settings.cluster.cluster_name),
                                 compile_tag=compile_tag(artifact_version(compile_inputs(
                                     model_id=settings.model.model_id, model_revision=settings.model.model_revision,
                                     neuron_sdk=settings.model.neuron_sdk))))
        self.image_build = image_build_step(self.image, self.source)
        self.diff_steps: dict[pipelines.CodeBuildStep, Stack] = {}
        self.stack_steps = {stack: self._review_then_deploy(stack, topic) for stack in application.stacks}
        self.permissions_check = pipelines.ConfirmPermissionsBroadening(
            "CheckPermissions", stage=self.stage, notification_topic=topic
        )
        # The outside world first: capacity, quota, connection, registries, weights.
        self.preflight = preflight_step(self.source, self.synth.primary_output,
                                        connection_arn=settings.release.pipeline_connection_arn,
                                        weights_source=settings.model.weights_source)
        self.permissions_check.add_step_dependency(self.preflight)
        self.pipeline.add_stage(self.stage, pre=[self.preflight, self.permissions_check],
                                stack_steps=list(self.stack_steps.values()))
        self.pipeline.build_pipeline()
        self._allow_codeconnections(settings.release.pipeline_connection_arn)
        pin_security_check_cli(self.pipeline, CDK_CLI_VERSION)
        deployment_role_arns_as_sub(self.pipeline.pipeline)
        acknowledge_release(self.pipeline, self.artifacts, self.image_build, self.image, self.preflight,
                            weights_statements(settings.model.weights_source))
        acknowledge_reviews(self.diff_steps)

    def _review_then_deploy(self, stack: Stack, topic) -> pipelines.StackSteps:
        """Change set -> RenderDiff -> ApproveChangeSet -> deploy (-> the image after Storage)."""
        render = diff_step(self, self.stage, stack, self.source, self.synth.primary_output)
        self.diff_steps[render] = stack
        approve = approval_step(self, stack, topic)
        approve.add_step_dependency(render)
        return pipelines.StackSteps(stack=stack, change_set=[render, approve],
                                    post=[self.image_build] if stack is self.stage.application.storage else [])

    def _allow_codeconnections(self, connection_arn: str) -> None:
        """CDK grants codestar-connections:UseConnection; a codeconnections: ARN needs the
        action of its own prefix (awslabs/landing-zone-accelerator-on-aws#828)."""
        source_stage = self.pipeline.pipeline.node.find_child("Source")
        (role,) = [c for c in source_stage.node.find_all()
                   if isinstance(c, iam.Role) and c.node.id == "CodePipelineActionRole"]
        prefix = connection_arn.split(":")[2]
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=[f"{prefix}:UseConnection"], resources=[connection_arn]))
