"""Every synthesized template: cfn-lint clean; cdk-nag ran with zero unacknowledged findings."""
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest


def cfn_lint_failed(returncode: int) -> bool:
    """The one rule: cfn-lint's exit code is a bit set (2 errors, 4 warnings, 8 informational);
    errors fail, and so does anything above those bits (cfn-lint itself broke)."""
    return bool(returncode & 2) or returncode >= 16


@pytest.mark.parametrize("mode", ["default", "scale-to-zero"])
def test_cfn_lint_once_per_template(mode, synthesized, zero):
    outdir = synthesized.outdir if mode == "default" else zero.outdir
    # Each template once: the scale-to-zero synth adds no release stage, the default one does.
    templates = sorted(str(p) for p in outdir.rglob("*.template.json"))
    if mode == "scale-to-zero":
        templates = [str(zero.outdir / zero.application.workload.template_file)]  # the others equal default's
    assert templates
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), "--format", "parseable", *templates],
                            capture_output=True, text=True, timeout=600)
    assert not cfn_lint_failed(result.returncode), result.stdout + result.stderr


def test_the_cfn_lint_rule():
    assert not cfn_lint_failed(0) and not cfn_lint_failed(4) and not cfn_lint_failed(8 | 4)
    assert cfn_lint_failed(2) and cfn_lint_failed(6) and cfn_lint_failed(16) and cfn_lint_failed(32)


def test_cdk_nag_acknowledgments_all_have_reasons(synthesized):
    """The fixture's synth would have raised on any unacknowledged finding; here
    every acknowledgment recorded in the assembly must carry a real reason."""
    acknowledged = {}
    for stack in synthesized.application.stacks:
        for construct in stack.node.find_all():
            for entry in construct.node.metadata:
                if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                    for rule, reason in entry.data.items():
                        if rule.startswith("AwsSolutions::"):  # aws-cdk-lib adds a few of its own
                            acknowledged[(construct.node.path, rule)] = reason
    assert acknowledged, "expected acknowledged cdk-nag findings"
    for (path, rule), reason in acknowledged.items():
        assert len(reason) > 40, (path, rule, reason)


def test_an_unacknowledged_warning_fails_synth(tmp_path):
    """cdk-nag's warning-level findings print and pass by themselves; the gate fails them."""
    from aws_cdk import aws_codebuild as codebuild, aws_kms as kms

    from stacks.compliance import UnacknowledgedFindings, acknowledge_all, check_compliance, fail_on_any_finding

    def synth(acknowledge_warning: bool) -> None:
        app = cdk.App(outdir=str(tmp_path / f"out-{acknowledge_warning}"))
        stack = cdk.Stack(app, "S")
        project = codebuild.PipelineProject(
            stack, "P", encryption_key=kms.Key(stack, "K", enable_key_rotation=True),
            environment=codebuild.BuildEnvironment(build_image=codebuild.LinuxBuildImage.from_docker_registry(
                "public.ecr.aws/docker/library/node:22-bookworm")))
        errors = ["AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                  f"/aws/codebuild/<{stack.resolve(stack.get_logical_id(project.node.default_child))}>:*]",
                  "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:"
                  f"report-group/<{stack.resolve(stack.get_logical_id(project.node.default_child))}>-*]",
                  "AwsSolutions-IAM5[Action::kms:ReEncrypt*]", "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]"]
        acknowledge_all(project, errors + (["AwsSolutions-CB5"] if acknowledge_warning else []), "x" * 50)
        check_compliance(app)
        app.synth()  # passes: only a warning is left
        fail_on_any_finding(app.outdir)

    synth(acknowledge_warning=True)
    with pytest.raises(UnacknowledgedFindings, match="warning AwsSolutions-CB5 at S/P/Resource"):
        synth(acknowledge_warning=False)
