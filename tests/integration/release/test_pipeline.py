"""The release pipeline: Source -> Build (tests + synth) -> UpdatePipeline -> Prod, where every
application stack goes Prepare (change set) -> ApproveChangeSet -> Deploy, and the model image
is pushed as <repository>:<commit id> before any stack that runs it."""
import json
from collections import Counter
import re
from pathlib import Path


from stacks.release import commands
from stacks.release.acknowledgments import logical_id
from stacks.release.review import CHANGE_SET_NAME
from stacks.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMMIT = f"${commands.COMMIT_VARIABLE}"


def buildspec(project_resource: dict) -> dict:
    return json.loads(project_resource["Properties"]["Source"]["BuildSpec"])


def build_commands(project_resource: dict) -> list[str]:
    return buildspec(project_resource)["phases"]["build"]["commands"]


def action_of(actions: list[dict], project_id: str) -> dict:
    (action,) = [a for a in actions if a.get("Configuration", {}).get("ProjectName") == {"Ref": project_id}]
    return action


def stack_actions(actions: list[dict], stack) -> dict[str, dict]:
    """Prepare, approval and Deploy of one stack, found by what they do (not by name)."""
    (prepare,) = [a for a in actions if a["ActionTypeId"]["Provider"] == "CloudFormation"
                  and a["Configuration"]["StackName"] == stack.stack_name
                  and a["Configuration"]["ActionMode"] == "CHANGE_SET_REPLACE"]
    (deploy,) = [a for a in actions if a["ActionTypeId"]["Provider"] == "CloudFormation"
                 and a["Configuration"]["StackName"] == stack.stack_name
                 and a["Configuration"]["ActionMode"] == "CHANGE_SET_EXECUTE"]
    group = prepare["Name"].rsplit(".", 1)[0]
    (approve,) = [a for a in actions if a["ActionTypeId"]["Provider"] == "Manual"
                  and a["Name"].startswith(group + ".")]
    (render,) = [a for a in actions if a["ActionTypeId"]["Provider"] == "CodeBuild"
                 and a["Name"] == group + ".RenderDiff"]
    return {"prepare": prepare, "render": render, "approve": approve, "deploy": deploy}


# --- shape of the pipeline -------------------------------------------------------

def test_stages_in_order_source_build_update_then_deploy(stages, release):
    names = [s["Name"] for s in stages]
    assert names[:3] == ["Source", "Build", "UpdatePipeline"]
    assert names[-1] == release.stage.stage_name
    assert set(names[3:-1]) <= {"Assets"}
    assert [a["Name"] for a in stages[2]["Actions"]] == ["SelfMutate"]


def test_source_is_a_codeconnections_checkout_from_settings(stages, release_template, application):
    settings = application.settings
    (source,) = stages[0]["Actions"]
    assert source["ActionTypeId"] == {"Category": "Source", "Owner": "AWS",
                                      "Provider": "CodeStarSourceConnection", "Version": "1"}
    assert source["Configuration"] == {
        "ConnectionArn": settings.release.pipeline_connection_arn,
        "FullRepositoryId": settings.release.pipeline_repository,
        "BranchName": settings.release.pipeline_branch,
        "DetectChanges": True,
    }
    # No token anywhere: no parameters, no outputs, no OAuth configuration.
    template = release_template.to_json()
    assert "OAuthToken" not in json.dumps(template)
    assert set(template.get("Parameters", {})) <= {"BootstrapVersion"}
    assert not template.get("Outputs")


def test_synth_step_runs_the_test_command_then_synthesizes_with_the_commit_as_image_tag(
        stages, project, release):
    spec = buildspec(project(release.pipeline.synth_project))
    build = spec["phases"]["build"]["commands"]
    assert build.count(commands.TEST_COMMAND) == 1
    (synth,) = [c for c in build if " cdk synth" in c]
    assert build.index(commands.TEST_COMMAND) < build.index(synth)
    assert synth.startswith("npx ") and synth.endswith(f"-c imageTag={COMMIT}")
    assert spec["phases"]["install"]["commands"] == list(commands.INSTALL_COMMANDS)
    assert spec["artifacts"]["base-directory"] == "cdk.out"
    (action,) = stages[1]["Actions"]
    assert action["Configuration"]["ProjectName"] == {"Ref": logical_id(release.pipeline.synth_project)}


def test_ci_run_runs_the_same_test_command():
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    steps = [line.strip() for line in script
             if line.strip() and not line.lstrip().startswith("#")
             and not re.match(r"^(set|cd)\s", line.strip())]
    assert steps == [commands.TEST_COMMAND], f".ci/run must run exactly {commands.TEST_COMMAND!r}: {steps}"


def test_synth_runs_debian_with_ci_set(project, release):
    env = project(release.pipeline.synth_project)["Properties"]["Environment"]
    # The test command installs Debian packages (bubblewrap, chromium) with apt: a Debian
    # release (bookworm 12, trixie 13) of the node image ECR Public mirrors from Docker Hub.
    assert re.fullmatch(r"public\.ecr\.aws/docker/library/node:\d+-(bookworm|trixie)", env["Image"]), env["Image"]
    assert {"Name": "CI", "Type": "PLAINTEXT", "Value": "true"} in env["EnvironmentVariables"]


def test_every_step_that_runs_the_test_command_may_create_user_namespaces(resources):
    """tests/pods needs `bwrap --unshare-user`: Docker's default seccomp profile forbids it in
    a CodeBuild container unless the project runs in privileged mode. Found by what the
    projects run, so a test step moved elsewhere is checked too."""
    testing = [r for r in resources.values() if r["Type"] == "AWS::CodeBuild::Project"
               and commands.TEST_COMMAND in json.dumps(r["Properties"]["Source"].get("BuildSpec"))]
    assert testing, "no CodeBuild project runs the test command"
    for project in testing:
        assert project["Properties"]["Environment"].get("PrivilegedMode") is True, project["Properties"].get("Name")


# --- deploy stage: change sets reviewed, image built in between ---------------------

def test_every_application_stack_is_prepared_approved_then_deployed(deploy_actions, release, resources):
    stacks = release.stage.application.stacks
    assert {s.stack_name for s in stacks} == {
        a["Configuration"]["StackName"] for a in deploy_actions if a["ActionTypeId"]["Provider"] == "CloudFormation"}
    (topic_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]
    for stack in stacks:
        steps = stack_actions(deploy_actions, stack)
        prepare, approve, deploy = steps["prepare"], steps["approve"], steps["deploy"]
        assert prepare["RunOrder"] < approve["RunOrder"] < deploy["RunOrder"], stack.stack_name
        assert prepare["Configuration"]["ChangeSetName"] == deploy["Configuration"]["ChangeSetName"] == CHANGE_SET_NAME
        config = approve["Configuration"]
        assert stack.stack_name in config["CustomData"] and CHANGE_SET_NAME in config["CustomData"]
        assert len(config["CustomData"]) <= 500  # CodePipeline's limit
        # The approval links to the readable diff of what this change does to the cluster.
        render = steps["render"]
        assert prepare["RunOrder"] < render["RunOrder"] < approve["RunOrder"]
        project_id = render["Configuration"]["ProjectName"]["Ref"]
        project_name = resources[project_id]["Properties"]["Name"]
        link = json.dumps(config["ExternalEntityLink"])
        assert f"codebuild/projects/{project_name}/history" in link and stack.stack_name in project_name
        spec = json.dumps(resources[project_id]["Properties"]["Source"]["BuildSpec"])
        assert f"-m tools.rendering diff --deployed-stack {stack.stack_name} " in spec
        assert stack.template_file in spec
        assert config["NotificationArn"] == {"Ref": topic_id}


def test_deploy_stage_holds_exactly_the_sandbox_stacks(release, application, synthesized):
    """What the pipeline deploys is what `cdk deploy` would: the same stacks, and in each the
    same resources (how many of each type; a few logical ids embed the stage's path), read
    from the two synthesized templates."""
    staged = release.stage.application
    assert [s.node.id for s in staged.stacks] == [s.node.id for s in application.stacks]
    stage_dir = next(synthesized.outdir.glob("assembly-*"))

    def resources(template_file: Path) -> Counter:
        return Counter(r["Type"] for r in json.loads(template_file.read_text())["Resources"].values())

    for deployed, sandbox in zip(staged.stacks, application.stacks):
        assert resources(stage_dir / deployed.template_file) == resources(synthesized.template_file(sandbox)), \
            sandbox.node.id


def test_permissions_broadening_is_checked_before_any_change_set(deploy_actions, release):
    check = [a for a in deploy_actions if a["Name"].startswith("CheckPermissions.")]
    assert {a["Name"] for a in check} == {"CheckPermissions.Check", "CheckPermissions.Confirm"}
    first_prepare = min(stack_actions(deploy_actions, s)["prepare"]["RunOrder"]
                        for s in release.stage.application.stacks)
    assert max(a["RunOrder"] for a in check) < first_prepare


def test_image_is_built_after_storage_and_before_every_stack_that_depends_on_storage(deploy_actions, release):
    application = release.stage.application
    build = action_of(deploy_actions, logical_id(release.image_build.project))
    storage = stack_actions(deploy_actions, application.storage)
    assert build["RunOrder"] > storage["deploy"]["RunOrder"]
    for stack in application.stacks:
        if application.storage in stack.dependencies:
            assert stack_actions(deploy_actions, stack)["prepare"]["RunOrder"] > build["RunOrder"], stack.stack_name


def test_workload_stack_depends_on_storage(release):
    """So that it waits for the image build that follows the Storage deploy."""
    application = release.stage.application
    assert application.storage in application.workload.dependencies


# --- image: tag = commit id, pushed to the one repository ---------------------------

def test_image_build_pushes_the_commit_id_to_the_storage_repository(project, release, synthesized):
    resource = project(release.image_build.project)
    env = resource["Properties"]["Environment"]
    assert env["PrivilegedMode"] is True
    variables = {v["Name"]: v["Value"] for v in env["EnvironmentVariables"]}
    storage = synthesized.template(release.stage.application.storage).to_json()["Resources"]
    (repository,) = [r for r in storage.values() if r["Type"] == "AWS::ECR::Repository"]
    assert variables["REPOSITORY_NAME"] == repository["Properties"]["RepositoryName"]
    assert json.dumps(variables["REPOSITORY_URI"]).endswith(f'/{variables["REPOSITORY_NAME"]}"]]}}')
    script = " ".join(build_commands(resource))
    for dockerfile, suffix in (("Dockerfile", ""), ("Dockerfile.gateway", "-gateway")):
        image = f"$REPOSITORY_URI:{COMMIT}{suffix}"
        assert f'docker build --pull --tag "{image}" --file model_image/{dockerfile} model_image' in script
        assert f'docker push "{image}"' in script
        assert f'--image-ids imageTag="{COMMIT}{suffix}"' in script
        assert (ROOT / "model_image" / dockerfile).is_file()


def test_the_image_build_gives_the_compile_job_its_tag_once_per_model_version(project, release, synthesized):
    """The compile Job of the deployed stage runs <repository>:compile-<version>; the image build
    tags the commit's image so (in ECR, after both pushes) unless the tag exists already."""
    from tools import rendering

    resource = project(release.image_build.project)
    variables = {v["Name"]: v["Value"] for v in resource["Properties"]["Environment"]["EnvironmentVariables"]}
    stage_dir = next(synthesized.outdir.glob("assembly-*"))
    workload = stage_dir / release.stage.application.workload.template_file
    (job,) = [o for o in rendering.all_objects(rendering.from_template_file(workload)) if o["kind"] == "Job"]
    (compile_,) = job["spec"]["template"]["spec"]["containers"]
    assert compile_["image"].endswith(":" + variables["COMPILE_TAG"])
    assert variables["COMPILE_TAG"] == "compile-" + job["metadata"]["labels"]["sd21.aws/model-version"]
    script = build_commands(resource)
    assert script[-1] == commands.TAG_COMPILE_IMAGE
    assert 'describe-images --repository-name "$REPOSITORY_NAME" --image-ids imageTag="$COMPILE_TAG"' in script[-1]
    assert 'put-image --repository-name "$REPOSITORY_NAME" --image-tag "$COMPILE_TAG"' in script[-1]


def test_synth_tag_and_pushed_tag_are_the_same_variable(project, release, stages, deploy_actions):
    # Both steps take the source checkout as their primary input, where CodeBuild
    # sets the variable to the commit id of this pipeline execution.
    (source,) = stages[0]["Actions"]
    (synth_action,) = stages[1]["Actions"]
    build_action = action_of(deploy_actions, logical_id(release.image_build.project))
    assert synth_action["InputArtifacts"] == build_action["InputArtifacts"] == source["OutputArtifacts"]
    synth = " ".join(build_commands(project(release.pipeline.synth_project)))
    push = " ".join(build_commands(project(release.image_build.project)))
    tag_in_synth = re.search(r"-c imageTag=(\$\w+)", synth).group(1)
    tag_pushed = re.search(r'docker push "\$REPOSITORY_URI:(\$\w+)"', push).group(1)
    assert tag_in_synth == tag_pushed == COMMIT


def test_a_commit_id_is_a_valid_image_tag(application):
    context = {k[:1].lower() + k[1:]: v for k, v in _context().items()}
    context["imageTag"] = "0123456789abcdef0123456789abcdef01234567"
    assert Settings.from_context(context).release.image_tag == context["imageTag"]


def _context() -> dict:
    import app as cdk_app
    return cdk_app.default_context()


def test_image_build_role_may_push_only_to_the_repository(resources, release):
    role_id = logical_id(release.image_build.project.role)
    statements = [s for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
                  and {"Ref": role_id} in r["Properties"]["Roles"]
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    ecr = [s for s in statements if any(a.startswith("ecr:") for a in _list(s["Action"]))]
    token = [s for s in ecr if _list(s["Action"]) == ["ecr:GetAuthorizationToken"]]
    assert len(token) == 1 and token[0]["Resource"] == "*"
    (push,) = [s for s in ecr if s not in token]
    assert {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload"} <= set(push["Action"])
    assert not any("*" in a for a in push["Action"])
    assert json.dumps(push["Resource"]).endswith(f':repository/{release.image.name}"]]}}')
    for statement in statements:
        assert not {"*", "s3:*", "ssm:*", "ecr:*", "iam:*"} & set(_list(statement["Action"]))


def test_no_other_pipeline_role_can_push_images(resources, release):
    role_id = logical_id(release.image_build.project.role)
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy" or {"Ref": role_id} in resource["Properties"]["Roles"]:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            assert "ecr:PutImage" not in _list(statement["Action"])


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


# --- storage and notifications ------------------------------------------------------

def test_the_pipeline_keeps_its_artifacts_in_the_store_and_encrypts_with_its_key(resources, release):
    """The store itself (KMS, TLS only, logged): tests/unit/stacks/release/test_artifacts.py."""
    (pipeline,) = [r for r in resources.values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    store = pipeline["Properties"]["ArtifactStore"]
    key_id = logical_id(release.artifacts.key)
    assert store["EncryptionKey"] == {"Id": {"Fn::GetAtt": [key_id, "Arn"]}, "Type": "KMS"}
    assert store["Location"] == {"Ref": logical_id(release.artifacts.bucket)}
    # Every CodeBuild project of the pipeline encrypts with the same key.
    projects = [r for r in resources.values() if r["Type"] == "AWS::CodeBuild::Project"]
    assert projects and all(p["Properties"]["EncryptionKey"] == {"Fn::GetAtt": [key_id, "Arn"]} for p in projects)


def test_no_one_is_subscribed_to_approvals_by_default(resources, application, release):
    """The topic itself (encrypted with the artifacts' key, TLS only, e-mail when set):
    tests/unit/stacks/release/test_notifications.py."""
    assert application.settings.release.approval_notification_email is None
    (topic_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]
    assert topic_id == logical_id(release.notifications.topic)
    assert resources[topic_id]["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [logical_id(release.artifacts.key),
                                                                                  "Arn"]}
    assert not [r for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"]


# --- lint ----------------------------------------------------------------------------

def test_pipeline_template_is_cfn_lint_clean(synthesized, release):
    import subprocess
    import sys

    template = synthesized.outdir / release.template_file
    cfn_lint = Path(sys.executable).with_name("cfn-lint")  # cfnlint has no __main__
    result = subprocess.run([str(cfn_lint), "--format", "parseable", str(template)],
                            capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stdout.splitlines() if re.search(r":E\d{4}:", line)]
    assert not errors and result.returncode in (0, 4, 8, 12), result.stdout + result.stderr


def test_source_may_use_a_codeconnections_connection(resources, application):
    """A codeconnections: ARN needs codeconnections:UseConnection (landing-zone-accelerator#828)."""
    arn = application.settings.release.pipeline_connection_arn
    granted = [(s["Action"], s["Resource"]) for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
               for s in r["Properties"]["PolicyDocument"]["Statement"]
               if "UseConnection" in json.dumps(s["Action"])]
    actions = {a for action, _ in granted for a in ([action] if isinstance(action, str) else action)}
    assert "codeconnections:UseConnection" in actions
    assert all(resource == arn for _, resource in granted)


def test_every_tool_the_pipeline_installs_is_pinned(resources):
    import re

    from stacks.release.stack import CDK_ASSETS_VERSION, CDK_CLI_VERSION

    specs = [json.dumps(r["Properties"]["Source"].get("BuildSpec")) for r in resources.values()
             if r["Type"] == "AWS::CodeBuild::Project"]
    installs = {m for spec in specs for m in re.findall(r"npm install -g ([^\s\\\"]+)", spec)}
    assert installs == {f"aws-cdk@{CDK_CLI_VERSION}", f"cdk-assets@{CDK_ASSETS_VERSION}"}
    package = json.loads((ROOT / "package.json").read_text())
    assert CDK_CLI_VERSION == package["devDependencies"]["aws-cdk"]


def test_synth_step_runs_a_supported_node_with_cpu_torch_and_a_timeout(project, release):
    props = project(release.pipeline.synth_project)["Properties"]
    assert props["Environment"]["Image"].startswith("public.ecr.aws/docker/library/node:22-")
    assert 10 <= props["TimeoutInMinutes"] <= 60
    spec = json.dumps(props["Source"]["BuildSpec"])
    assert "download.pytorch.org/whl/cpu" in spec and "TORCH_PIP_ARGS" in spec


def test_preflight_runs_before_the_permissions_check_and_every_change_set(deploy_actions, release, project, resources):
    (preflight,) = [a for a in deploy_actions if a["Name"] == "Preflight"]
    check = min(a["RunOrder"] for a in deploy_actions if a["Name"].startswith("CheckPermissions."))
    first_prepare = min(stack_actions(deploy_actions, s)["prepare"]["RunOrder"]
                        for s in release.stage.application.stacks)
    assert preflight["RunOrder"] < check < first_prepare
    spec = json.dumps(project(release.preflight.project)["Properties"]["Source"]["BuildSpec"])
    assert "-m tools.preflight --assembly cdk.out" in spec and "requirements-preflight.txt" in spec
    # Read-only: describe, quota and connection reads.
    role_id = project(release.preflight.project)["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    actions = {a for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
               and {"Ref": role_id} in r["Properties"]["Roles"]
               for s in r["Properties"]["PolicyDocument"]["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    own = {a for a in actions if not a.startswith(("logs:", "codebuild:", "s3:", "kms:"))}
    assert own == {"ec2:DescribeAvailabilityZones", "ec2:DescribeInstanceTypeOfferings",
                   "servicequotas:GetServiceQuota", "codeconnections:GetConnection",
                   "ssm:GetParameter", "lambda:GetAccountSettings"}


def test_preflight_requirements_are_pinned_like_the_rest():
    def pins(path):
        lines = [line.split("#")[0].strip() for line in (ROOT / path).read_text().splitlines()]
        return dict(line.split("==") for line in lines if "==" in line)

    preflight = pins("requirements-preflight.txt")
    elsewhere = {**pins("requirements.txt"), **pins("model_image/requirements.txt")}
    assert preflight and all(elsewhere[name] == version for name, version in preflight.items())


def test_a_release_reading_an_s3_weights_mirror_synthesizes_with_every_finding_acknowledged(tmp_path):
    """weightsSource s3://... (the production setup) gives the Preflight step a read of the
    mirror's prefix; cdk-nag's IAM5 on that wildcard stopped synth until it was acknowledged."""
    import aws_cdk as cdk

    import app as cdk_app
    from stacks.compliance import fail_on_any_finding
    from stacks.release.stack import PipelineStack

    app = cdk.App(context={**cdk_app.default_context(), "weightsSource": "s3://weights-mirror-example/sd21/"},
                  outdir=str(tmp_path))
    cdk_app.build(app)
    app.synth()
    fail_on_any_finding(str(tmp_path))
    (release,) = [c for c in app.node.children if isinstance(c, PipelineStack)]
    template = json.loads((tmp_path / release.template_file).read_text())
    granted = [s for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
               for s in r["Properties"]["PolicyDocument"]["Statement"]
               if s.get("Resource") == "arn:aws:s3:::weights-mirror-example/sd21/*"]
    assert [s["Action"] for s in granted] == ["s3:GetObject"]
