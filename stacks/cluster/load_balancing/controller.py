"""AWS Load Balancer Controller, so that an Ingress becomes an ALB.

Its Helm chart with its upstream IAM policy, bound by Pod Identity (no OIDC provider):
* the Service mutator webhook is off: with `failurePolicy: Fail` on every Service CREATE
  it rejects other charts' Services while the controller is not ready yet
  (kubernetes-sigs/aws-load-balancer-controller#4140, aws/eks-charts#1058), and this
  app creates no LoadBalancer Service;
* the image comes from ECR Public, which serves every region (aws-cdk-lib's
  AlbController defaults to a us-west-2 registry);
* Helm gives up after HELM_TIMEOUT (aws-cdk-lib's AlbController waits 15 minutes, the
  kubectl Lambda's own limit, so a failed install answered only after an hour).
"""
import json

from aws_cdk import Aws, aws_eks_v2 as eks, aws_iam as iam
from constructs import Construct

from stacks.cluster.eks.manifests import HELM_TIMEOUT
from stacks.compliance import acknowledge_all
from stacks.cluster.load_balancing.versions import CHART_VERSIONS, policy_file
from stacks.pod_identity import PodIdentityBinding, pod_identity_role

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
CHART_REPOSITORY = "https://aws.github.io/eks-charts"
IMAGE_REPOSITORY = "public.ecr.aws/eks/aws-load-balancer-controller"

# The wildcard resources of the controller's upstream policy.
_ELB = "arn:<AWS::Partition>:elasticloadbalancing:*:*"
CONTROLLER_POLICY_WILDCARDS = (
    "*",
    "arn:<AWS::Partition>:ec2:*:*:security-group/*",
    *(f"{_ELB}:{kind}/{lb}/{rest}" for lb in ("app", "net")
      for kind, rest in (("listener-rule", "*/*/*"), ("listener", "*/*/*"), ("loadbalancer", "*/*"))),
    f"{_ELB}:targetgroup/*/*",
)


def controller_statements(version: str) -> list[iam.PolicyStatement]:
    document = json.loads(policy_file(version).read_text())
    statements = []
    for statement in document["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        statement = {**statement, "Resource": [r.replace("arn:aws:", f"arn:{Aws.PARTITION}:") for r in resources]}
        statements.append(iam.PolicyStatement.from_json(statement))
    return statements


class LoadBalancerController(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.Cluster, system_nodes: eks.Nodegroup,
                 version: str, system_node_min_size: int) -> None:
        super().__init__(scope, id)
        self.role = pod_identity_role(self, "Role", f"AWS Load Balancer Controller (Pod Identity "
                                                    f"{NAMESPACE}/{SERVICE_ACCOUNT})")
        self.policy = iam.Policy(self, "Policy", statements=controller_statements(version), roles=[self.role])
        acknowledge_all(self.policy, [f"AwsSolutions-IAM5[Resource::{r}]" for r in CONTROLLER_POLICY_WILDCARDS],
                        "The controller's upstream IAM policy for this version: it creates load balancers, "
                        "target groups and security groups whose ids are unknown in advance, scoped by the "
                        "elbv2.k8s.aws/cluster tag conditions where the API allows.")
        self.pod_identity = PodIdentityBinding(self, "PodIdentity", cluster_name=cluster.cluster_name,
                                               namespace=NAMESPACE, service_account=SERVICE_ACCOUNT, role=self.role)
        self.chart = eks.HelmChart(
            self, "Chart",
            cluster=cluster,
            chart="aws-load-balancer-controller",
            repository=CHART_REPOSITORY,
            version=CHART_VERSIONS[version],
            namespace=NAMESPACE,
            release="aws-load-balancer-controller",
            wait=True,
            timeout=HELM_TIMEOUT,
            values={
                "clusterName": cluster.cluster_name,
                "region": Aws.REGION,
                "vpcId": cluster.vpc.vpc_id,
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "image": {"repository": IMAGE_REPOSITORY, "tag": version},
                "enableServiceMutatorWebhook": False,
                # Two replicas (the chart's default) need two system nodes.
                "replicaCount": min(2, system_node_min_size),
            },
        )
        self.chart.node.add_dependency(self.pod_identity, system_nodes)
