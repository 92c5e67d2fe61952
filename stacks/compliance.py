"""cdk-nag wiring: the AwsSolutions pack, the one way we acknowledge a finding, and the
gate: any unacknowledged finding, of any level, fails synth."""
import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"


REPORT = "validation-report.json"


class UnacknowledgedFindings(Exception):
    """cdk-nag findings nobody acknowledged (the message lists them, one per line)."""


def check_compliance(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    # A report left by an earlier synth in the same folder must not be read as this one's.
    (Path(app.outdir) / REPORT).unlink(missing_ok=True)


def fail_on_any_finding(outdir: str) -> None:
    """After app.synth(): errors already failed it, but cdk-nag's warnings only print and pass.
    Any finding left in the validation report fails here."""
    report = Path(outdir) / REPORT
    if not report.exists():
        return
    findings = [f"{violation['severity']} {violation['ruleName']} at {construct['constructPath']}"
                for plugin in json.loads(report.read_text())["pluginReports"]
                for violation in plugin["violations"] for construct in violation["violatingConstructs"]]
    if findings:
        raise UnacknowledgedFindings("unacknowledged cdk-nag findings (acknowledge each with its reason, "
                                     "stacks/compliance.py):\n" + "\n".join(findings))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one cdk-nag AwsSolutions finding on `scope` (and its children), with the reason why.

    `rule` is the rule id, e.g. "AwsSolutions-IAM4", optionally with the finding,
    e.g. "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/X]".
    """
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{PACK}::{rule}", reason=reason))


def managed_policy(name: str) -> str:
    """The finding id of AwsSolutions-IAM4 for one AWS managed policy."""
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"


def flatten_reference(node) -> str:
    """A resolved CloudFormation value as cdk-nag writes it inside a finding id
    (the same rules as cdk-nag's flattenCfnReference)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if "Fn::Join" in node:
        delimiter, items = node["Fn::Join"]
        return delimiter.join(flatten_reference(item) for item in items)
    if "Fn::Sub" in node:
        return flatten_reference(node["Fn::Sub"])
    if "Fn::GetAtt" in node:
        resource, attribute = node["Fn::GetAtt"]
        return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"
    if "Fn::ImportValue" in node:
        return flatten_reference(node["Fn::ImportValue"])
    if "Ref" in node:
        return f"<{flatten_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def wildcard_findings(scope: IConstruct, statements: list[iam.PolicyStatement]) -> list[str]:
    """The AwsSolutions-IAM5 finding ids that these statements raise in `scope`'s stack."""
    stack = cdk.Stack.of(scope)
    findings = []
    for statement in statements:
        for resource in statement.resources:
            flat = flatten_reference(stack.resolve(resource))
            if "*" in flat:
                findings.append(f"AwsSolutions-IAM5[Resource::{flat}]")
        findings += [f"AwsSolutions-IAM5[Action::{a}]" for a in statement.actions if "*" in a]
    return list(dict.fromkeys(findings))


def acknowledge_all(scope: IConstruct, findings: list[str], reason: str) -> None:
    for finding in findings:
        acknowledge(scope, finding, reason)
