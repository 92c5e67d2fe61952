"""Attaches Karpenter's EC2NodeClass and the inf2 NodePool to the cluster.

The node class gets the node role object (its name token) and the discovery
tag; both manifests wait for the Karpenter Helm release, which installs the
CRDs, and the NodePool also for its node class.
"""
import cdk8s
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from stacks.cluster.karpenter.node_class import NodeClassChart
from stacks.cluster.karpenter.node_pool import NodePoolChart
from stacks.cluster.eks.manifests import attach_chart, keep_when_removed
from stacks.cluster.karpenter.controller import Karpenter


class Inf2NodePool(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.Cluster, karpenter: Karpenter,
                 discovery_tag: tuple[str, str], ami_alias: str, volume_gib: int, fast_image_pull: bool,
                 volume_throughput_mibps: int, volume_iops: int, capacity_types: tuple[str, ...],
                 cpu_limit: int, memory_gib_limit: int, neuron_limit: int, consolidate_after: str,
                 disruption_budget: str, expire_after: str) -> None:
        super().__init__(scope, id)
        charts = cdk8s.App()
        self.node_class_chart = NodeClassChart(
            charts, "karpenter-node-class",
            role_name=karpenter.node_role.role.role_name,
            discovery_tag=discovery_tag,
            ami_alias=ami_alias,
            volume_gib=volume_gib,
            fast_image_pull=fast_image_pull,
            volume_throughput_mibps=volume_throughput_mibps,
            volume_iops=volume_iops,
        )
        self.node_pool_chart = NodePoolChart(
            charts, "karpenter-node-pool",
            node_class=self.node_class_chart.node_class,
            capacity_types=capacity_types,
            cpu_limit=cpu_limit,
            memory_gib_limit=memory_gib_limit,
            neuron_limit=neuron_limit,
            consolidate_after=consolidate_after,
            disruption_budget=disruption_budget,
            expire_after=expire_after,
        )
        self.node_class = attach_chart(self, "Inf2NodeClass", cluster, self.node_class_chart)
        self.node_pool = attach_chart(self, "Inf2NodePool", cluster, self.node_pool_chart)
        # Deleting either terminates every node of the pool.
        keep_when_removed(self.node_class)
        keep_when_removed(self.node_pool)
        # The CRDs come with the karpenter-crd release and are served once the controller
        # runs; nodes launched from this class must be able to join, so the role's access
        # entry must exist too.
        self.node_class.node.add_dependency(karpenter.chart, karpenter.node_role.access_entry)
        self.node_pool.node.add_dependency(karpenter.chart, self.node_class)
