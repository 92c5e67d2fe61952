"""The endpoint's alarms alone: thresholds from their props, an encrypted topic CloudWatch
may publish to, an e-mail subscription only when given, and NoReadyReplica by mode."""
import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from sd21 import metric_names as names
from stacks.workload.observability.alarms import EndpointAlarms
from stacks.workload.observability.metrics import EndpointMetrics
from tools.dashboard import alarms as read_alarms

NAMES = {"NoReadyReplica", "FailedRequests", "LatencyP90", "QueueFull", "NeuronHardwareErrors", "ServerRestarts",
         "NodeUnhealthy"}


def _alarms(**props) -> tuple[cdk.Stack, EndpointAlarms, Template, dict[str, dict]]:
    stack = cdk.Stack(cdk.App(), "Test")
    props = {"email": None, "scales_to_zero": False, "no_ready_replica_minutes": 7, "error_ratio_percent": 4,
             "latency_slo_seconds": 9, **props}
    alarms = EndpointAlarms(stack, "Alarms", metrics=EndpointMetrics("sd21", "sd21", "sd21-inference"), **props)
    template = Template.from_stack(stack)
    by_name = {a["id"].removeprefix("Alarms")[:-8]: a for a in read_alarms(template.to_json())}
    return stack, alarms, template, by_name


def test_thresholds_come_from_the_props():
    _, _, _, alarms = _alarms(no_ready_replica_minutes=7, error_ratio_percent=4, latency_slo_seconds=9)
    assert set(alarms) == NAMES
    assert alarms["LatencyP90"]["threshold"] == 9 and "9s SLO" in alarms["LatencyP90"]["description"]
    assert alarms["FailedRequests"]["threshold"] == 4 and "More than 4%" in alarms["FailedRequests"]["description"]
    assert alarms["NoReadyReplica"]["periods"] == alarms["NoReadyReplica"]["datapoints"] == 7
    for name, alarm in alarms.items():  # each says what to look at first
        assert "First:" in alarm["description"] or "look at" in alarm["description"], name


def test_with_replicas_no_ready_replica_reads_ready_replicas_and_silence_is_the_alarm():
    _, _, _, alarms = _alarms(scales_to_zero=False)
    assert alarms["NoReadyReplica"]["what"] == f"{names.CLOUDWATCH_NAMESPACE}/{names.CW_READY} Sum"
    assert alarms["NoReadyReplica"]["comparison"] == "LessThanThreshold"
    assert alarms["NoReadyReplica"]["missing"] == "breaching"  # no replica publishes: that is the alarm


def test_at_zero_no_ready_replica_means_requests_waited_without_one():
    _, _, template, alarms = _alarms(scales_to_zero=True)
    assert alarms["NoReadyReplica"]["what"] == "FILL(cold, 0) + FILL(held, 0)"
    assert alarms["NoReadyReplica"]["missing"] == "notBreaching"  # at zero, no replica and no request is fine
    (alarm,) = [r for r in template.find_resources("AWS::CloudWatch::Alarm").values()
                if any(q.get("Expression") == "FILL(cold, 0) + FILL(held, 0)" for q in r["Properties"]["Metrics"])]
    read = {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in alarm["Properties"]["Metrics"]
            if "MetricStat" in q}
    assert read == {"cold": names.CW_COLD_REQUESTS, "held": names.CW_HELD_REQUESTS}


def test_every_alarm_pages_through_an_encrypted_topic():
    stack, alarms, template, _ = _alarms()
    topic_id = stack.get_logical_id(alarms.topic.node.default_child)
    for resource in template.find_resources("AWS::CloudWatch::Alarm").values():
        assert resource["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert resource["Properties"]["OKActions"] == [{"Ref": topic_id}]
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True, "KeyPolicy": {
        "Statement": Match.array_with([Match.object_like({"Principal": {"Service": "cloudwatch.amazonaws.com"},
                                                          "Action": ["kms:Decrypt", "kms:GenerateDataKey*"]})])}})


def test_an_email_is_subscribed_only_when_given():
    assert _alarms(email=None)[2].find_resources("AWS::SNS::Subscription") == {}
    _alarms(email="ops@example.com")[2].has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
