"""The cluster stack: a thin wiring of its units (EKS, Karpenter and its NodePool,
the load balancer controller, the Neuron charts). The only place here that reads the
settings: each unit gets exactly the values it uses."""
from aws_cdk import Stack, aws_ec2 as ec2
from constructs import Construct

from stacks.cluster.eks.cluster import EksCluster
from stacks.cluster.karpenter.controller import Karpenter
from stacks.cluster.karpenter.inf2_node_pool import Inf2NodePool
from stacks.cluster.load_balancing.controller import LoadBalancerController
from stacks.cluster.neuron.neuron_charts import NeuronCharts
from stacks.cluster.observability.container_insights import CLOUDWATCH_OBSERVABILITY, ContainerInsights
from stacks.cluster.observability.node_health import NODE_MONITORING_AGENT, NodeMonitoringAgent
from stacks.settings import Settings


class ClusterStack(Stack):
    """EKS with its system nodes, Karpenter and its inf2 NodePool, the load balancer
    controller, and the Neuron device plugin and schedulers."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, vpc: ec2.IVpc, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.eks = EksCluster(
            self, "Eks", vpc=vpc,
            cluster_name=settings.cluster.cluster_name,
            kubernetes_version=settings.cluster.kubernetes_version,
            endpoint_access=settings.cluster.endpoint_access,
            public_access_cidrs=settings.cluster.public_access_cidrs,
            admin_principal_arn=settings.cluster.admin_principal_arn,
            addon_versions=settings.cluster.addon_versions,
            discovery_tag=settings.cluster.discovery_tag,
            system_node_instance_type=settings.cluster.system_node_instance_type,
            system_node_min_size=settings.cluster.system_node_min_size,
            system_node_desired_size=settings.cluster.system_node_desired_size,
            system_node_max_size=settings.cluster.system_node_max_size,
            system_node_disk_gib=settings.cluster.system_node_disk_gib,
        )
        self.cluster = self.eks.cluster
        self.karpenter = Karpenter(
            self, "Karpenter", cluster=self.cluster, system_nodes=self.eks.system_nodes, dns=self.eks.coredns,
            cluster_name=settings.cluster.cluster_name,
            version=settings.versions.karpenter_version,
            node_repair=settings.cluster.node_repair,
            system_node_min_size=settings.cluster.system_node_min_size,
        )
        self.node_pools = Inf2NodePool(
            self, "Inf2", cluster=self.cluster, karpenter=self.karpenter,
            discovery_tag=settings.cluster.discovery_tag,
            ami_alias=settings.node_pool.node_ami_alias,
            volume_gib=settings.node_pool.node_root_volume_gib,
            fast_image_pull=settings.node_pool.fast_image_pull,
            volume_throughput_mibps=settings.node_pool.node_root_volume_throughput_mibps,
            volume_iops=settings.node_pool.node_root_volume_iops,
            capacity_types=settings.node_pool.node_capacity_types,
            cpu_limit=settings.node_pool.node_pool_cpu_limit,
            memory_gib_limit=settings.node_pool.node_pool_memory_gib_limit,
            neuron_limit=settings.node_pool.node_pool_neuron_limit,
            consolidate_after=settings.node_pool.node_consolidate_after,
            disruption_budget=settings.node_pool.node_disruption_budget,
            expire_after=settings.node_pool.node_expire_after,
        )
        self.neuron = NeuronCharts(
            self, "Neuron", cluster=self.cluster,
            device_plugin_version=settings.versions.neuron_device_plugin_version,
            scheduler_extension_version=settings.versions.neuron_scheduler_version,
            kube_scheduler_image=settings.cluster.kube_scheduler_image,
            system_node_min_size=settings.cluster.system_node_min_size,
        )
        self.alb_controller = LoadBalancerController(
            self, "LoadBalancerController", cluster=self.cluster, system_nodes=self.eks.system_nodes,
            version=settings.versions.alb_controller_version,
            system_node_min_size=settings.cluster.system_node_min_size,
        )
        # LBC's webhooks must not race Karpenter's Services (its Service mutator is off too).
        self.karpenter.chart.node.add_dependency(self.alb_controller.chart)
        # Node conditions for Karpenter's node repair; Neuron, node and pod metrics.
        self.node_monitoring = NodeMonitoringAgent(
            self, "NodeMonitoring", cluster=self.cluster,
            addon_version=settings.cluster.addon_versions.get(NODE_MONITORING_AGENT),
        )
        self.container_insights = ContainerInsights(
            self, "ContainerInsights", cluster=self.cluster,
            addon_version=settings.cluster.addon_versions.get(CLOUDWATCH_OBSERVABILITY),
        )
        for addon in (self.node_monitoring.addon, self.container_insights.addon):
            addon.node.add_dependency(self.eks.system_nodes)
