"""Attaches the Neuron charts to the cluster: device plugin, scheduler extension, my-scheduler.

The charts get objects, not names: the system-node label of the node group,
the pinned versions, and (for my-scheduler) the extension's Service.
"""
import cdk8s
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from stacks.cluster.neuron.device_plugin import NeuronDevicePluginChart
from stacks.cluster.neuron.my_scheduler import MySchedulerChart
from stacks.cluster.neuron.scheduler_extension import NeuronSchedulerExtensionChart
from stacks.cluster.eks.cluster import SYSTEM_NODE_LABEL
from stacks.cluster.eks.manifests import attach_chart


class NeuronCharts(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.Cluster, device_plugin_version: str,
                 scheduler_extension_version: str, kube_scheduler_image: str, system_node_min_size: int) -> None:
        super().__init__(scope, id)
        charts = cdk8s.App()
        self.device_plugin_chart = NeuronDevicePluginChart(
            charts, "neuron-device-plugin", version=device_plugin_version
        )
        self.extension_chart = NeuronSchedulerExtensionChart(
            charts, "neuron-scheduler-extension",
            version=scheduler_extension_version, system_node_label=SYSTEM_NODE_LABEL,
        )
        self.my_scheduler_chart = MySchedulerChart(
            charts, "my-scheduler",
            image=kube_scheduler_image,
            extension_service=self.extension_chart.service,
            system_node_label=SYSTEM_NODE_LABEL,
            # Standbys via leader election, at most one per system node.
            replicas=min(2, system_node_min_size),
        )
        self.device_plugin = attach_chart(self, "NeuronDevicePlugin", cluster, self.device_plugin_chart)
        self.extension = attach_chart(self, "NeuronSchedulerExtension", cluster, self.extension_chart)
        self.my_scheduler = attach_chart(self, "MyScheduler", cluster, self.my_scheduler_chart)
        # The extender must answer before my-scheduler places its first Neuron pod.
        self.my_scheduler.node.add_dependency(self.extension)
