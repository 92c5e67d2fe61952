"""The scale-to-zero gateway alone (built by the inference chart at minReplicas 0): what it
is told, where it runs, and that it forwards to the inference Service."""
from __future__ import annotations

from dataclasses import replace

from sd21.contract import CloudWatchEnv, GatewayEnv, JobsEnv

from stacks.workload.serving.gateway import COLD_RETRY_AFTER_SECONDS, COLD_START_ESTIMATE_SECONDS, METRICS_PORT
from stacks.workload.serving.inference import InferenceChart
from stacks.workload.serving.spec import HEALTH_PATH, SERVE_PORT
from tests.unit.stacks.workload.charts import (
    ENDPOINT, HOLD, MODEL, QUEUE_URL, SYSTEM_NODES, app_with_identities, container, one, pod_spec, spec, told,
)


def _objects(**changes) -> list[dict]:
    app, identities = app_with_identities()
    return InferenceChart(app, "inference", spec=spec(**{"scale_to_zero": HOLD, **changes}),
                          identities=identities).to_json()


def test_the_gateway_is_told_its_hold_the_timeout_and_the_model():
    gateway = container(one(_objects(scale_to_zero=replace(HOLD, hold_requests=3, hold_seconds=120),
                                     endpoint=replace(ENDPOINT, request_timeout_seconds=90)),
                            "Deployment", "sd21-gateway"), "gateway")
    assert told(gateway, GatewayEnv) == GatewayEnv(
        upstream="http://sd21-inference.sd21.svc:80", port=SERVE_PORT, metrics_port=METRICS_PORT, request_timeout_s=90,
        cold_retry_after_s=COLD_RETRY_AFTER_SECONDS, hold_requests=3, hold_s=120,
        cold_start_s=COLD_START_ESTIMATE_SECONDS, model_name=MODEL.name,
        jobs=JobsEnv(queue_url=QUEUE_URL, bucket="sd21-models-example"), cloudwatch=CloudWatchEnv(cluster="sd21-inf2"))
    assert gateway["image"] == "registry.example/sd21:commit-a-gateway"


def test_the_gateway_forwards_to_the_inference_service():
    objects = _objects()
    service = one(objects, "Service", "sd21-inference")
    upstream = told(container(one(objects, "Deployment", "sd21-gateway"), "gateway"), GatewayEnv).upstream
    assert upstream == (f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:"
                        f"{service['spec']['ports'][0]['port']}")


def test_the_gateway_runs_always_on_the_system_nodes_without_a_token():
    objects = _objects()
    deployment = one(objects, "Deployment", "sd21-gateway")
    pod = pod_spec(deployment)
    assert deployment["spec"]["replicas"] >= 2
    key, value = SYSTEM_NODES
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "sd21-gateway"
    gateway = container(deployment, "gateway")
    assert gateway["readinessProbe"]["httpGet"]["path"] == HEALTH_PATH
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
    assert METRICS_PORT in {p["containerPort"] for p in gateway["ports"]}
    budget = one(objects, "PodDisruptionBudget", "sd21-gateway")
    assert budget["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_gateway_waits_for_its_open_requests_before_it_exits():
    for timeout in (6, 600):
        deployment = one(_objects(endpoint=replace(ENDPOINT, request_timeout_seconds=timeout)),
                         "Deployment", "sd21-gateway")
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] > timeout
