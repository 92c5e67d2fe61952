"""The EKS node monitoring agent on every node: it sets the node conditions that
Karpenter's node repair acts on (stacks/cluster/karpenter/controller.py).

Facts (see stacks/external_artifacts.yaml, addons):
- add-on `eks-node-monitoring-agent`; a DaemonSet that tolerates every taint, so it runs
  on the tainted inf2 nodes too; it needs no IAM permissions (EKS User Guide,
  workloads-add-ons-available-eks.adoc; chart values.yaml of aws/eks-node-monitoring-agent);
- it sets AcceleratedHardwareReady=False on Neuron DMA, HBM, NeuronCore and SRAM
  uncorrectable errors, and KernelReady/NetworkingReady/StorageReady/ContainerRuntimeReady
  (EKS User Guide, node-health-nma.adoc).
"""
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

NODE_MONITORING_AGENT = "eks-node-monitoring-agent"


class NodeMonitoringAgent(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, addon_version: str | None) -> None:
        super().__init__(scope, id)
        self.addon = eks.Addon(self, "Addon", cluster=cluster, addon_name=NODE_MONITORING_AGENT,
                               addon_version=addon_version)
