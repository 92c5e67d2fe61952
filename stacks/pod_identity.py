"""EKS Pod Identity: roles that pods assume, and bindings that no pod outruns.

An association "may take several seconds to be effective" (EKS API reference,
CreatePodIdentityAssociation), and credentials are injected when a pod is admitted:
a pod admitted before its association is effective never gets any, and restarting its
containers does not help. So a binding is the association plus a wait for it to take
effect (a custom resource that sleeps PROPAGATION_SECONDS), and whatever creates pods
of that ServiceAccount (a Helm release, a manifest) depends on the binding.
"""
from __future__ import annotations

from aws_cdk import CustomResource, Duration, Stack, aws_eks_v2 as eks, aws_iam as iam, aws_lambda as lambda_
from constructs import Construct

from stacks.compliance import acknowledge_all, managed_policy

PRINCIPAL = "pods.eks.amazonaws.com"
PROPAGATION_SECONDS = 30
_WAITER_ID = "PodIdentityPropagationWait"

# Answers CloudFormation itself (no cfn-response module needed): SUCCESS after the wait on
# Create/Update, at once on Delete; FAILED with the reason if anything goes wrong.
WAITER_SOURCE = '''\
import json
import time
import urllib.request


def respond(event, status, reason):
    body = json.dumps({
        "Status": status, "Reason": reason,
        "PhysicalResourceId": event.get("PhysicalResourceId") or event["LogicalResourceId"],
        "StackId": event["StackId"], "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": ""})
    urllib.request.urlopen(request, timeout=30).close()


def handler(event, context):
    try:
        seconds = int(event["ResourceProperties"]["Seconds"])
        if event["RequestType"] in ("Create", "Update"):
            time.sleep(seconds)
        respond(event, "SUCCESS", f"waited {seconds}s for the association to take effect")
    except Exception as error:
        respond(event, "FAILED", f"{type(error).__name__}: {error}")
'''


def pod_identity_role(scope: Construct, id: str, description: str) -> iam.Role:
    """A role only EKS Pod Identity can assume (it also tags the session)."""
    role = iam.Role(scope, id, assumed_by=iam.ServicePrincipal(PRINCIPAL), description=description)
    role.assume_role_policy.add_statements(iam.PolicyStatement(
        actions=["sts:TagSession"], principals=[iam.ServicePrincipal(PRINCIPAL)]))
    return role


def _waiter(scope: Construct) -> lambda_.Function:
    """One waiting function per stack."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_WAITER_ID)
    if existing is not None:
        return existing
    function = lambda_.Function(
        stack, _WAITER_ID,
        runtime=lambda_.Runtime.PYTHON_3_14,
        handler="index.handler",
        code=lambda_.Code.from_inline(WAITER_SOURCE),
        timeout=Duration.seconds(PROPAGATION_SECONDS + 60),
        description="Waits for EKS Pod Identity associations to take effect before pods are created",
    )
    acknowledge_all(function, [managed_policy("service-role/AWSLambdaBasicExecutionRole")],
                    "The wait function only writes its own logs; AWS documents this managed policy for that.")
    return function


class PodIdentityBinding(Construct):
    """Binds `role` to namespace/service_account; depend on this, not on the association."""

    def __init__(self, scope: Construct, id: str, *, cluster_name: str, namespace: str, service_account: str,
                 role: iam.IRole) -> None:
        super().__init__(scope, id)
        self.association = eks.CfnPodIdentityAssociation(
            self, "Association", cluster_name=cluster_name, namespace=namespace,
            service_account=service_account, role_arn=role.role_arn)
        self.effective = CustomResource(
            self, "Effective", service_token=_waiter(self).function_arn,
            resource_type="Custom::PodIdentityPropagation",
            # A new association (a new ARN) is waited for again.
            properties={"Association": self.association.attr_association_arn, "Seconds": PROPAGATION_SECONDS})
        self.effective.node.add_dependency(self.association)
