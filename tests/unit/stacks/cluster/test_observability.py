"""The node monitoring agent and Container Insights alone: each an EKS add-on at the given
version (EKS's default without one); the CloudWatch agent's identity before its add-on."""
import pytest

from stacks.cluster.observability.container_insights import ContainerInsights
from stacks.cluster.observability.node_health import NodeMonitoringAgent


@pytest.mark.parametrize("version", ["v1.4.0-eksbuild.1", None])
def test_the_node_monitoring_agent_is_an_addon_at_the_given_version(attached, version):
    agent = NodeMonitoringAgent(attached.stack, "NodeMonitoring", cluster=attached.cluster, addon_version=version)
    props = attached.resource(agent.addon)["Properties"]
    assert props["AddonName"] == "eks-node-monitoring-agent"
    assert props.get("AddonVersion") == version


@pytest.mark.parametrize("version", ["v4.1.0-eksbuild.1", None])
def test_container_insights_is_the_cloudwatch_addon_bound_by_pod_identity(attached, version):
    insights = ContainerInsights(attached.stack, "ContainerInsights", cluster=attached.cluster, addon_version=version)
    resources = attached.resources()
    addon = resources[attached.logical_id(insights.addon)]
    assert addon["Properties"]["AddonName"] == "amazon-cloudwatch-observability"
    assert addon["Properties"].get("AddonVersion") == version
    association = resources[attached.logical_id(insights.binding.association)]["Properties"]
    assert (association["Namespace"], association["ServiceAccount"]) == ("amazon-cloudwatch", "cloudwatch-agent")
    # The agent's pods get credentials only if the association is effective first.
    assert attached.logical_id(insights.binding.effective) in addon["DependsOn"]
