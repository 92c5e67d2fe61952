"""cdk-nag wiring: the AwsSolutions pack and the one way we acknowledge a finding."""
import aws_cdk as cdk
from aws_cdk import Aws, aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"


def check_compliance(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one cdk-nag AwsSolutions finding on `scope` (and its children), with the reason why.

    `rule` is the rule id, e.g. "AwsSolutions-IAM4", optionally with the finding,
    e.g. "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/X]".
    """
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{PACK}::{rule}", reason=reason))


def managed_policy(name: str) -> str:
    """The finding id of AwsSolutions-IAM4 for one AWS managed policy."""
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"


# How cdk-nag prints the pseudo parameters inside a finding id.
_NAG_FORM = {Aws.PARTITION: "<AWS::Partition>", Aws.REGION: "<AWS::Region>", Aws.ACCOUNT_ID: "<AWS::AccountId>"}


def wildcard_findings(statements: list[iam.PolicyStatement]) -> list[str]:
    """The AwsSolutions-IAM5 finding ids that these statements raise."""
    findings = []
    for statement in statements:
        for resource in statement.resources:
            if "*" in resource:
                for token, shown in _NAG_FORM.items():
                    resource = resource.replace(token, shown)
                findings.append(f"AwsSolutions-IAM5[Resource::{resource}]")
        findings += [f"AwsSolutions-IAM5[Action::{a}]" for a in statement.actions if "*" in a]
    return list(dict.fromkeys(findings))


def acknowledge_all(scope: IConstruct, findings: list[str], reason: str) -> None:
    for finding in findings:
        acknowledge(scope, finding, reason)
