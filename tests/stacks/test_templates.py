"""Every synthesized template: cfn-lint clean; cdk-nag ran with zero unacknowledged findings."""
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk


def test_cfn_lint_reports_no_errors(synthesized):
    templates = sorted(str(p) for p in synthesized.outdir.rglob("*.template.json"))
    assert templates
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), "--format", "parseable", *templates],
                            capture_output=True, text=True, timeout=600)
    # Exit code bits: 2 = errors, 4 = warnings, 8 = informational.
    assert not result.returncode & 2 and result.returncode < 16, result.stdout + result.stderr


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
