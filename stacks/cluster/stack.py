"""The cluster stack: a thin wiring of its units (EKS, Karpenter and its NodePool,
the load balancer controller, the Neuron charts)."""
from aws_cdk import Stack, aws_ec2 as ec2
from constructs import Construct

from stacks.cluster.eks.cluster import EksCluster
from stacks.cluster.karpenter.controller import Karpenter
from stacks.cluster.karpenter.inf2_node_pool import Inf2NodePool
from stacks.cluster.load_balancing.controller import LoadBalancerController
from stacks.cluster.neuron.neuron_charts import NeuronCharts
from stacks.cluster.observability.container_insights import ContainerInsights
from stacks.cluster.observability.node_health import NodeMonitoringAgent
from stacks.settings import Settings


class ClusterStack(Stack):
    """EKS with its system nodes, Karpenter and its inf2 NodePool, the load balancer
    controller, and the Neuron device plugin and schedulers."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, vpc: ec2.IVpc, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.eks = EksCluster(self, "Eks", settings=settings, vpc=vpc)
        self.cluster = self.eks.cluster
        self.karpenter = Karpenter(self, "Karpenter", settings=settings, cluster=self.cluster,
                                   system_nodes=self.eks.system_nodes, dns=self.eks.coredns)
        self.node_pools = Inf2NodePool(self, "Inf2", settings=settings, cluster=self.cluster,
                                       karpenter=self.karpenter)
        self.neuron = NeuronCharts(self, "Neuron", settings=settings, cluster=self.cluster)
        self.alb_controller = LoadBalancerController(self, "LoadBalancerController", settings=settings,
                                                     cluster=self.cluster, system_nodes=self.eks.system_nodes)
        # LBC's webhooks must not race Karpenter's Services (its Service mutator is off too).
        self.karpenter.chart.node.add_dependency(self.alb_controller.chart)
        # Node conditions for Karpenter's node repair; Neuron, node and pod metrics.
        self.node_monitoring = NodeMonitoringAgent(self, "NodeMonitoring", settings=settings, cluster=self.cluster)
        self.container_insights = ContainerInsights(self, "ContainerInsights", settings=settings, cluster=self.cluster)
        for addon in (self.node_monitoring.addon, self.container_insights.addon):
            addon.node.add_dependency(self.eks.system_nodes)
