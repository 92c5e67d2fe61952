"""Container Insights with Neuron metrics, by the `amazon-cloudwatch-observability` add-on.

Chosen over a neuron-monitor DaemonSet scraped by our Prometheus because the add-on
(an AWS-managed CloudWatch agent) already deploys neuron-monitor on inf2 nodes and
publishes NeuronCore utilization, device memory, execution errors and ECC events to
CloudWatch, tied to pods and nodes; the dashboard and alarms need them in CloudWatch,
and nobody has to keep an exporter or a scrape config in step with the Neuron SDK.
Facts: Neuron metrics need add-on v1.5.0+ and are on by default; metric names and
dimensions below are from the CloudWatch User Guide, Container-Insights-metrics-enhanced-EKS,
and aws/amazon-cloudwatch-agent translator/translate/otel/exporter/awsemf/kubernetes.go.
The agent's ServiceAccount is `cloudwatch-agent` in `amazon-cloudwatch`; Pod Identity is
supported from add-on 3.1.0 (CloudWatch User Guide, Container-Insights-setup-EKS-addon).
"""
from aws_cdk import aws_eks_v2 as eks, aws_iam as iam
from constructs import Construct

from stacks.compliance import acknowledge, managed_policy
from stacks.pod_identity import PodIdentityBinding, pod_identity_role

CLOUDWATCH_OBSERVABILITY = "amazon-cloudwatch-observability"
AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT = "amazon-cloudwatch", "cloudwatch-agent"
AGENT_POLICY = "CloudWatchAgentServerPolicy"

# Container Insights (namespace ContainerInsights), dimension ClusterName unless noted.
NAMESPACE = "ContainerInsights"
NEURONCORE_UTILIZATION = "node_neuroncore_utilization"          # Percent; also per InstanceId, NodeName
NEURON_EXECUTION_ERRORS = "node_neuron_execution_errors_total"  # Count
NEURON_ECC_EVENTS = "node_neurondevice_hw_ecc_events_total"     # Count: hardware (memory) errors
NEURON_DEVICE_MEMORY = "node_neurondevice_runtime_memory_used_bytes"
FAILED_NODES = "cluster_failed_node_count"
RUNNING_PODS = "service_number_of_running_pods"                 # by Service, Namespace, ClusterName
CONTAINER_RESTARTS = "pod_number_of_container_restarts"         # by PodName, Namespace, ClusterName


class ContainerInsights(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, addon_version: str | None) -> None:
        super().__init__(scope, id)
        role = pod_identity_role(self, "AgentRole", "CloudWatch agent: Container Insights and Neuron metrics")
        role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name(AGENT_POLICY))
        acknowledge(role, managed_policy(AGENT_POLICY),
                    "The CloudWatch agent add-on documents this AWS managed policy (metrics, logs, EC2 tags).")
        self.binding = PodIdentityBinding(self, "AgentIdentity", cluster_name=cluster.cluster_name,
                                          namespace=AGENT_NAMESPACE, service_account=AGENT_SERVICE_ACCOUNT, role=role)
        self.addon = eks.Addon(self, "Addon", cluster=cluster, addon_name=CLOUDWATCH_OBSERVABILITY,
                               addon_version=addon_version)
        # The agent's pods get credentials only if the association is effective first.
        self.addon.node.add_dependency(self.binding)
