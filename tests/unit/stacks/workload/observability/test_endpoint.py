"""The endpoint's observability alone: a dashboard named after the cluster with the SLO and
the price from its props, the gateway's widgets only at zero, and publishing limited to
the endpoint's namespace."""
import json

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from sd21 import metric_names as names
from stacks.workload.observability.endpoint import EndpointObservability
from tools.dashboard import dashboard_body


def _observability(**props) -> tuple[cdk.Stack, EndpointObservability, dict]:
    stack = cdk.Stack(cdk.App(), "Test")
    publisher = iam.Role(stack, "Publisher", assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com"))
    props = {"cluster_name": "my-cluster", "namespace": "sd21", "deployment": "sd21-inference",
             "publishers": [publisher], "scales_to_zero": False, "alarm_email": None, "no_ready_replica_minutes": 5,
             "error_ratio_alarm_percent": 5, "latency_slo_seconds": 9, "inf2_hourly_usd": 0.5, **props}
    observability = EndpointObservability(stack, "Observability", **props)
    return stack, observability, Template.from_stack(stack).to_json()


def test_the_dashboard_is_named_after_the_cluster_and_draws_the_slo_and_the_price():
    _, _, template = _observability(cluster_name="my-cluster", latency_slo_seconds=9, inf2_hourly_usd=0.5)
    (dashboard,) = [r["Properties"] for r in template["Resources"].values()
                    if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert dashboard["DashboardName"] == "sd21-my-cluster"
    body = dashboard_body(template)
    widgets = {w["properties"].get("title"): w["properties"] for w in body["widgets"]}
    (slo,) = widgets["Latency p50 / p90 / p99 (s)"]["annotations"]["horizontal"]
    assert (slo["value"], slo["label"]) == (9, "SLO")
    cost = json.dumps(widgets["Cost per 1000 images at the current rate (USD)"])
    assert "* 0.5 / 60 / images * 1000" in cost and "inf2 nodes x $0.5/h" in cost
    assert f'"{names.CW_GATEWAY_REQUESTS}"' not in json.dumps(body)  # no gateway with replicas


def test_at_zero_the_dashboard_shows_the_gateway_and_the_whole_cold_start():
    _, _, template = _observability(scales_to_zero=True)
    body = json.dumps(dashboard_body(template))
    for name in (names.CW_GATEWAY_REQUESTS, names.CW_COLD_REQUESTS, names.CW_HELD_REQUESTS, names.CW_COLD_START_TOTAL):
        assert f'"{name}"' in body, name
    assert "(and cold requests)" in body and "at zero: wanted -> first answer" in body


def test_publishers_may_put_metrics_only_into_the_endpoint_namespace():
    stack, observability, template = _observability()
    (policy,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "cloudwatch:PutMetricData" and statement["Resource"] == "*"
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": names.CLOUDWATCH_NAMESPACE}}
    (publisher,) = [c for c in stack.node.children if isinstance(c, iam.Role)]
    assert policy["Roles"] == [{"Ref": stack.get_logical_id(publisher.node.default_child)}]
    assert observability.metrics.cluster_name == "my-cluster"
