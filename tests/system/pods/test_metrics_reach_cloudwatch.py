"""What the dashboard and alarms read is what the pods publish: the server, the gateway and
the cold-start metrics pod (against a stand-in Prometheus), run from their specs (CloudWatch on loopback moto, a 1 s period instead of 60 s), are
asked what they published, and every metric of ours the synthesized dashboard and alarms
name must be among it, with the same dimensions and values."""
from __future__ import annotations

import re
import time

import boto3
import httpx

from sd21 import metric_names as names
from sd21.api import ERROR_TYPES
from tools import dashboard as render
from tests.support.pods.cluster import generate, url_of
from tests.support.pods.prometheus import FakePrometheus
from tests.support.pods.service import Service


def referenced(template: dict) -> set[tuple[str, frozenset]]:
    """(metric name, {(dimension, value)}) of every SD21 metric the dashboard or an alarm reads."""
    found = set()
    for widget in render.dashboard_body(template)["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            parts = [part for part in entry if not isinstance(part, dict)]
            if parts and parts[0] == names.CLOUDWATCH_NAMESPACE:
                found.add((parts[1], frozenset(zip(parts[2::2], parts[3::2]))))
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for query in resource["Properties"].get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric")
            if metric and metric["Namespace"] == names.CLOUDWATCH_NAMESPACE:
                found.add((metric["MetricName"], frozenset((d["Name"], d["Value"]) for d in metric["Dimensions"])))
    return found


def scraped_names(container, objects: list[dict], deployment: str) -> set[str]:
    """Sample names at the address Prometheus scrapes: the pod template's prometheus.io annotations."""
    from prometheus_client.parser import text_string_to_metric_families

    (template,) = [o["spec"]["template"] for o in objects
                   if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    port = container.adaptations.port(int(annotations["prometheus.io/port"]))
    text = httpx.get(f"http://127.0.0.1:{port}{annotations['prometheus.io/path']}", timeout=10).text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def published() -> set[tuple[str, frozenset]]:
    client = boto3.client("cloudwatch")
    metrics = client.list_metrics(Namespace=names.CLOUDWATCH_NAMESPACE)["Metrics"]
    return {(m["MetricName"], frozenset((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in metrics}


def test_the_pods_publish_every_metric_the_dashboard_and_alarms_read(
        serving, gateway_before, cold_start_metrics_pod, deployed, synthesized, application, zero):
    fast = {"SD21_CLOUDWATCH_PERIOD_S": "1"}
    server = serving  # the session's server, which publishes every second too
    assert server.env()["SD21_CLOUDWATCH_PERIOD_S"] == fast["SD21_CLOUDWATCH_PERIOD_S"]
    service = Service([server])
    # Karpenter's and the kubelet's timings, each phase having happened once.
    prometheus = FakePrometheus([((condition,), 30.0) for condition in (
        'type="Launched"', 'type="Registered"', 'type="Initialized"', "kubelet_image_pull_duration_seconds")])
    cold_start_metrics_pod(prometheus.url, fast)
    try:
        gateway = gateway_before(service.url, extra_env=fast)
        service.wait_ready(1, timeout=30)
        assert generate(url_of(gateway)).size == (512, 512)  # requests, images, latency
        assert httpx.post(url_of(server) + "/v1/images/generations", json={"prompt": ""}).status_code == 422
        wanted = referenced(synthesized.template(application.workload).to_json())
        wanted |= referenced(zero.template(zero.application.workload))
        # Errors by Kind appear once a kind occurs; the kinds read must be ones the API answers.
        errors = {item for item in wanted if item[0] == names.CW_ERRORS}
        deadline = time.monotonic() + 30  # 1 s periods: what is published shows within a few
        while True:
            have = published()
            invalid = any(name == names.CW_ERRORS and dict(dims).get(names.CLOUDWATCH_KIND_DIMENSION) ==
                          "invalid_request" for name, dims in have)
            phases = {dict(dims).get(names.CLOUDWATCH_PHASE_DIMENSION) for name, dims in have
                      if name == names.CW_COLD_START}
            if (invalid and wanted - errors <= have and {"stage", "load", "warmup", "stage_to_ready"} <= phases) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        kinds = {dict(dimensions)[names.CLOUDWATCH_KIND_DIMENSION] for _, dimensions in errors}
        assert kinds and kinds <= set(ERROR_TYPES)
        assert any(name == names.CW_ERRORS and dict(dims).get(names.CLOUDWATCH_KIND_DIMENSION) == "invalid_request"
                   for name, dims in have)
        missing = {item for item in wanted - errors if item not in have}
        assert not missing, f"read by the dashboard or alarms but never published: {sorted(missing)}\n" \
                            f"published: {sorted(have)}"
        cluster = {(names.CLOUDWATCH_CLUSTER_DIMENSION, application.settings.cluster.cluster_name)}
        assert all(cluster <= dims for _, dims in wanted)
        assert {"stage", "load", "warmup", "stage_to_ready"} <= phases  # the stage report reached the server
        # KEDA's queries (both modes) name series that the pods expose where Prometheus scrapes them:
        # the port and path of each pod template's prometheus.io annotations.
        exposed = (scraped_names(server, deployed, "sd21-inference")
                   | scraped_names(gateway, zero.objects, "sd21-gateway"))
        for objects in (deployed, zero.objects):
            (scaled,) = [o for o in objects if o["kind"] == "ScaledObject"]
            for trigger in scaled["spec"]["triggers"]:
                if trigger["type"] == "prometheus":
                    queried = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", trigger["metadata"]["query"]))
                    assert queried and queried <= exposed, (trigger["name"], queried - exposed)
        (line,) = [line for line in server.log().splitlines() if line.startswith("cold start:")]
        print(f"\nthis replica's {line} (tiny weights, cpu, loopback S3)")
    finally:
        service.close()
        prometheus.close()
