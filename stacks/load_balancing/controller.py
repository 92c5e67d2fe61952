"""AWS Load Balancer Controller, so that an Ingress becomes an ALB."""
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from stacks.compliance import acknowledge_all
from stacks.settings import Settings

# The wildcard resources of the controller policy that aws-cdk-lib ships.
_ELB = "arn:<AWS::Partition>:elasticloadbalancing:*:*"
CONTROLLER_POLICY_WILDCARDS = (
    "*",
    "arn:<AWS::Partition>:ec2:*:*:security-group/*",
    *(f"{_ELB}:{kind}/{lb}/{rest}" for lb in ("app", "net")
      for kind, rest in (("listener-rule", "*/*/*"), ("listener", "*/*/*"), ("loadbalancer", "*/*"))),
    f"{_ELB}:targetgroup/*/*",
)


def alb_controller(scope: Construct, *, settings: Settings, cluster: eks.Cluster,
                   system_nodes: eks.Nodegroup) -> eks.AlbController:
    """aws-cdk-lib ships the controller's IAM policy for each version it knows,
    which is why the version setting is limited to those."""
    version_member = "V" + settings.alb_controller_version.lstrip("v").replace(".", "_")
    controller = eks.AlbController(
        scope,
        "AlbController",
        cluster=cluster,
        version=getattr(eks.AlbControllerVersion, version_member),
        # Two replicas (the chart's default) need two system nodes.
        additional_helm_chart_values={"replicaCount": min(2, settings.system_node_min_size)},
    )
    controller.node.add_dependency(system_nodes)
    acknowledge_all(controller, [f"AwsSolutions-IAM5[Resource::{r}]" for r in CONTROLLER_POLICY_WILDCARDS],
                "The controller's upstream IAM policy, shipped by aws-cdk-lib for this version: it "
                "creates load balancers, target groups and security groups whose ids are unknown in "
                "advance, scoped by the elbv2.k8s.aws/cluster tag conditions where the API allows.")
    return controller
