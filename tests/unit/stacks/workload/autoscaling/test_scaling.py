"""KEDA's ScaledObject chart alone: bounds, triggers and cooldown from its props, for a
Deployment built beside it."""
from __future__ import annotations

from dataclasses import replace

import cdk8s
import cdk8s_plus_27 as kplus

from sd21.metric_names import GATEWAY_RECEIVED, INFLIGHT_REQUESTS
from stacks.workload.autoscaling.scaling import Replicas, ScalingChart

REPLICAS = Replicas(min_replicas=1, max_replicas=4, target_pending_per_replica=2, scale_to_zero_after_seconds=900)
PROMETHEUS = "http://prometheus-server.monitoring.svc"
QUEUE = "https://sqs.us-east-1.amazonaws.com/000000000000/sd21-jobs"


def _objects(replicas: Replicas) -> list[dict]:
    app = cdk8s.Testing.app()
    target = kplus.Deployment(cdk8s.Chart(app, "workload"), "Deployment", metadata=cdk8s.ApiObjectMetadata(
        name="sd21-inference", namespace="sd21"))
    target.add_container(image="example")
    return ScalingChart(app, "scaling", replicas=replicas, target=target, prometheus_url=PROMETHEUS,
                        job_queue_url=QUEUE, region="us-east-1").to_json()


def _scaled_object(replicas: Replicas) -> dict:
    (scaled,) = [o for o in _objects(replicas) if o["kind"] == "ScaledObject"]
    return scaled


def test_it_scales_the_deployment_between_the_bounds_on_the_load_and_the_jobs():
    scaled = _scaled_object(replace(REPLICAS, min_replicas=2, max_replicas=7, target_pending_per_replica=3))
    spec = scaled["spec"]
    assert (scaled["metadata"]["name"], scaled["metadata"]["namespace"]) == ("sd21-inference", "sd21")
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sd21-inference"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 7)
    assert "cooldownPeriod" not in spec, "KEDA's cooldown only scales to zero"
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert list(triggers) == ["pending-requests", "queued-jobs"]
    load = triggers["pending-requests"]
    assert (load["type"], load["metricType"]) == ("prometheus", "AverageValue")
    assert load["metadata"] == {"serverAddress": PROMETHEUS, "threshold": "3", "activationThreshold": "0",
                                "query": f'sum({INFLIGHT_REQUESTS}{{namespace="sd21"}}) or vector(0)'}
    jobs = triggers["queued-jobs"]
    assert jobs["type"] == "aws-sqs-queue"
    assert jobs["metadata"]["queueURL"] == QUEUE and jobs["metadata"]["awsRegion"] == "us-east-1"
    assert jobs["metadata"]["activationQueueLength"] == "0" and int(jobs["metadata"]["queueLength"]) >= 1
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0, "load is followed up at once"
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300, "nodes take minutes to come back"


def test_at_a_minimum_of_zero_the_gateways_activity_wakes_it_and_the_cooldown_ends_it():
    spec = _scaled_object(replace(REPLICAS, min_replicas=0, scale_to_zero_after_seconds=1234))["spec"]
    assert spec["minReplicaCount"] == 0 and spec["cooldownPeriod"] == 1234
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert list(triggers) == ["pending-requests", "recent-requests", "queued-jobs"]
    activity = triggers["recent-requests"]["metadata"]
    assert activity["threshold"] == "1" and activity["activationThreshold"] == "0"
    assert activity["query"].startswith(f'clamp_max(sum(increase({GATEWAY_RECEIVED}{{namespace="sd21"}}[')
    assert activity["query"].endswith("), 1) or vector(0)")


def test_the_job_trigger_authenticates_with_the_keda_operators_pod_identity():
    objects = _objects(REPLICAS)
    (authentication,) = [o for o in objects if o["kind"] == "TriggerAuthentication"]
    (scaled,) = [o for o in objects if o["kind"] == "ScaledObject"]
    (jobs,) = [t for t in scaled["spec"]["triggers"] if t["name"] == "queued-jobs"]
    assert jobs["authenticationRef"] == {"name": authentication["metadata"]["name"]}
    assert authentication["metadata"]["namespace"] == "sd21"
    assert authentication["spec"] == {"podIdentity": {"provider": "aws"}}
