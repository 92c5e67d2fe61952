"""Karpenter: controller role bound by Pod Identity, node role, interruption queue, Helm release."""
from aws_cdk import aws_eks_v2 as eks, aws_iam as iam
from constructs import Construct

from stacks.cluster.eks.manifests import HELM_TIMEOUT, keep_when_removed
from stacks.compliance import acknowledge_all, wildcard_findings
from stacks.cluster.karpenter import controller_policy as policy
from stacks.cluster.karpenter.interruption import InterruptionQueue
from stacks.cluster.karpenter.node_role import KarpenterNodeRole
from stacks.pod_identity import PodIdentityBinding, pod_identity_role

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
RELEASE = "karpenter"
# The controller's metrics port (chart value controller.metrics.port, 8080 by default: the
# chart README's values table for 1.6.3 and templates/service.yaml port "http-metrics"; not
# verified from here for 1.14). Set here so that Prometheus scrapes the port we chose
# (stacks/workload/autoscaling/autoscaling.py).
METRICS_PORT = 8080


def metrics_url() -> str:
    """The controller's metrics, by the Service its chart names after a release that contains
    "karpenter" (charts/karpenter/templates/_helpers.tpl "karpenter.fullname")."""
    return f"http://{RELEASE}.{NAMESPACE}.svc:{METRICS_PORT}/metrics"
CHART_REPOSITORY = "oci://public.ecr.aws/karpenter/karpenter"
# Helm installs a chart's crds/ once and never upgrades them; the upgrade guide installs
# the CRDs from this chart instead, so a version bump upgrades them too.
CRD_CHART_REPOSITORY = "oci://public.ecr.aws/karpenter/karpenter-crd"
# Requests = limits, as in Karpenter's getting-started values (cpu 1 there; 250m fits our
# small system nodes, and the controller is not CPU bound at this scale).
CONTROLLER_RESOURCES = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


class Karpenter(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.Cluster, system_nodes: eks.Nodegroup,
                 dns: eks.Addon, cluster_name: str, version: str, node_repair: bool,
                 system_node_min_size: int) -> None:
        super().__init__(scope, id)
        self.node_role = KarpenterNodeRole(self, "NodeRole", cluster=cluster)
        self.interruption = InterruptionQueue(self, "Interruption")
        queue = self.interruption.queue

        self.controller_role = pod_identity_role(self, "ControllerRole",
                                                 "Karpenter controller (Pod Identity kube-system/karpenter)")
        groups = {
            "NodeLifecycle": policy.node_lifecycle(cluster_name),
            "IAMIntegration": policy.iam_integration(cluster_name, self.node_role.role),
            "EKSIntegration": policy.eks_integration(cluster.cluster_arn),
            "Interruption": policy.interruption(queue.queue_arn),
            "ResourceDiscovery": policy.resource_discovery(),
        }
        for name, statements in groups.items():
            managed = iam.ManagedPolicy(self, f"{name}Policy", statements=statements,
                                        description=f"Karpenter controller: {name}")
            self.controller_role.add_managed_policy(managed)
            acknowledge_all(
                managed, wildcard_findings(managed, statements),
                "Karpenter creates and deletes instances, launch templates and instance profiles "
                "whose ids are unknown in advance; wildcards are bounded by the cluster/nodepool/"
                "ec2nodeclass tag conditions of Karpenter's published policy, and EC2 Describe/pricing "
                "calls have no resource-level permissions.",
            )
        self.pod_identity = PodIdentityBinding(self, "PodIdentity", cluster_name=cluster.cluster_name,
                                               namespace=NAMESPACE, service_account=SERVICE_ACCOUNT,
                                               role=self.controller_role)

        self.crd_chart = eks.HelmChart(
            self,
            "CrdChart",
            cluster=cluster,
            chart="karpenter-crd",
            repository=CRD_CHART_REPOSITORY,
            version=version,
            namespace=NAMESPACE,
            release="karpenter-crd",
            create_namespace=False,
            wait=True,
            timeout=HELM_TIMEOUT,
        )
        # Uninstalling it deletes the CRDs and with them every NodePool, EC2NodeClass and NodeClaim.
        keep_when_removed(self.crd_chart)
        self.chart = eks.HelmChart(
            self,
            "Chart",
            cluster=cluster,
            chart="karpenter",
            repository=CHART_REPOSITORY,
            version=version,
            namespace=NAMESPACE,
            release=RELEASE,
            create_namespace=False,
            wait=True,
            timeout=HELM_TIMEOUT,
            skip_crds=True,  # from karpenter-crd above
            values={
                "settings": {"clusterName": cluster.cluster_name, "interruptionQueue": queue.queue_name,
                             # Node repair (alpha, off by default in 1.14): replaces a node whose
                             # AcceleratedHardwareReady is False for 10 min, or Ready/Kernel/Storage/
                             # Networking/ContainerRuntime conditions for 30 min, unless >20% of the
                             # NodePool is unhealthy. Sources: karpenter-provider-aws website
                             # v1.14 concepts/disruption.md and reference/settings.md (NodeRepair);
                             # chart README "settings.featureGates.nodeRepair".
                             "featureGates": {"nodeRepair": node_repair}},
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                # One replica per system node at most (the chart spreads them by host).
                "replicas": min(2, system_node_min_size),
                "controller": {"resources": CONTROLLER_RESOURCES, "metrics": {"port": METRICS_PORT}},
            },
        )
        # Credentials must exist before the controller's first API call; nodes must
        # run it, and it resolves the AWS endpoints through cluster DNS.
        self.chart.node.add_dependency(self.pod_identity, self.crd_chart, system_nodes, dns)
