"""Node repair, Container Insights, the dashboard and the alarms, as synthesized."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sd21.api import ERROR_TYPES
from tools import dashboard as render
from tests.conftest import logical_id
from tests.integration.workload.conftest import export_value

OPERATING = Path(__file__).resolve().parents[3] / "docs" / "operating.md"


def _addon(template, name: str) -> tuple[str, dict]:
    (match,) = [(key, r) for key, r in template.find_resources("AWS::EKS::Addon").items()
                if r["Properties"]["AddonName"] == name]
    return match


def test_node_monitoring_agent_runs_and_karpenter_repairs_nodes(synthesized, application):
    template = synthesized.template(application.cluster)
    _, agent = _addon(template, "eks-node-monitoring-agent")
    assert logical_id(application.cluster.eks.system_nodes) in str(agent.get("DependsOn", []))
    (karpenter,) = [r for r in template.find_resources("Custom::AWSCDK-EKS-HelmChart").values()
                    if r["Properties"]["Chart"] == "karpenter"]
    values = json.loads(json.dumps(karpenter["Properties"]["Values"]))
    text = values if isinstance(values, str) else json.dumps(values)
    assert '\\"featureGates\\":{\\"nodeRepair\\":true}' in text or '"featureGates":{"nodeRepair":true}' in text
    assert application.settings.cluster.node_repair is True


def test_container_insights_agent_gets_its_policy_by_pod_identity_first(synthesized, application):
    template = synthesized.template(application.cluster)
    key, addon = _addon(template, "amazon-cloudwatch-observability")
    associations = template.find_resources("AWS::EKS::PodIdentityAssociation", {"Properties": {
        "Namespace": "amazon-cloudwatch", "ServiceAccount": "cloudwatch-agent"}})
    assert len(associations) == 1
    (association,) = associations.values()
    role_id = association["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    role = template.to_json()["Resources"][role_id]
    assert "CloudWatchAgentServerPolicy" in json.dumps(role["Properties"]["ManagedPolicyArns"])
    # Its pods are admitted only once the association is effective.
    assert logical_id(application.cluster.container_insights.binding.effective) in addon["DependsOn"]


def test_the_alarms_take_their_thresholds_from_the_settings(synthesized, application):
    """The alarms' own shape (topic, key, actions, descriptions, each mode's NoReadyReplica):
    tests/unit/stacks/workload/observability/test_alarms.py."""
    settings = application.settings
    template = synthesized.template(application.workload)
    alarms = {a["id"].removeprefix("ObservabilityAlarms")[:-8]: a for a in render.alarms(template.to_json())}
    assert set(alarms) == {"NoReadyReplica", "FailedRequests", "LatencyP90", "QueueFull", "NeuronHardwareErrors",
                           "ServerRestarts", "NodeUnhealthy"}
    assert alarms["LatencyP90"]["threshold"] == settings.alarms.latency_slo_seconds
    assert alarms["FailedRequests"]["threshold"] == settings.alarms.error_ratio_alarm_percent
    assert alarms["NoReadyReplica"]["periods"] == settings.alarms.no_ready_replica_minutes
    assert alarms["NoReadyReplica"]["missing"] == "breaching"  # minReplicas >= 1 by default
    assert template.find_resources("AWS::SNS::Subscription") == {}  # alarmEmail is empty by default


def test_every_error_type_the_server_answers_is_documented():
    """The literal error types in the server's code are those the API documents and the
    dashboard graphs (a new one would go unseen)."""
    source = Path(__file__).resolve().parents[3] / "model_image" / "sd21"
    used = set()
    for module in ("server.py", "service.py"):
        text = (source / module).read_text()
        used |= set(re.findall(r'(?:_error|Rejected)\(\s*\d+,\s*"([a-z_]+)"', text))
        used |= set(re.findall(r'labels\("([a-z_]+)"\)', text))
    assert used and used <= set(ERROR_TYPES), used - set(ERROR_TYPES)


def test_pods_may_publish_only_into_the_endpoint_namespace(synthesized, application):
    template = synthesized.template(application.workload)
    serve_role = application.storage.access.serve_role
    (policy,) = template.find_resources("AWS::IAM::Policy", {"Properties": {"PolicyDocument": {"Statement": [
        {"Action": "cloudwatch:PutMetricData"}]}}}).values() or [None]
    assert policy is not None  # its condition: tests/unit/stacks/workload/observability/test_endpoint.py
    # The roles it names include the serve role, exported by the Storage stack.
    storage = synthesized.template(application.storage).to_json()
    named = [export_value(storage, "${ImportValue:" + role["Fn::ImportValue"] + "}")
             for role in policy["Properties"]["Roles"] if "Fn::ImportValue" in role]
    assert {"Ref": logical_id(serve_role)} in named


def test_at_scale_to_zero_the_gateway_publishes_and_no_ready_replica_means_cold_requests(zero):
    template = zero.template(zero.application.workload)
    associations = [r for r in template["Resources"].values() if r["Type"] == "AWS::EKS::PodIdentityAssociation"
                    and r["Properties"]["ServiceAccount"] == "sd21-gateway"]
    assert len(associations) == 1
    (policy,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
                 and "cloudwatch:PutMetricData" in json.dumps(r)]
    assert len(policy["Properties"]["Roles"]) == 3  # the server's, the gateway's and the cold-start metrics pod's
    # What the alarm reads at zero (cold and held requests): tests/unit/.../test_alarms.py.
    (no_ready,) = [a for a in render.alarms(template) if "NoReadyReplica" in a["id"]]
    assert no_ready["what"] == "FILL(cold, 0) + FILL(held, 0)"


def test_the_readme_shows_the_dashboard_as_synthesized(synthesized, application):
    """The docs' picture of the dashboard is rendered from the template, so it cannot drift."""
    template = synthesized.template(application.workload).to_json()
    expected = render.render_dashboard(render.dashboard_body(template)) + "\n\n" + render.render_alarms(template)
    text = OPERATING.read_text()
    match = re.search(r"<!-- dashboard:begin -->\n```text\n(.*?)\n```\n<!-- dashboard:end -->", text, re.S)
    assert match, "docs/operating.md lacks the dashboard block (python -m tools.dashboard ...)"
    assert match.group(1) == expected


@pytest.mark.parametrize("key,value,message", [
    ("nodeRepair", "sometimes", "nodeRepair"),
    ("alarmEmail", "not-an-email", "alarmEmail"),
    ("latencySloSeconds", 0, "latencySloSeconds"),
    ("errorRatioAlarmPercent", 101, "errorRatioAlarmPercent"),
    ("hangMinimumSeconds", 60, "hangMinimumSeconds"),  # not below requestTimeoutSeconds (60)
])
def test_bad_observability_settings_name_themselves(key, value, message):
    from stacks.settings import Settings, SettingsError, default_context

    with pytest.raises(SettingsError, match=message):
        Settings.from_context({**default_context(), key: value})
