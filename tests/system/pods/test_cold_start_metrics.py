"""The cold-start phases before our containers run reach CloudWatch: sd21-cold-start-metrics,
run from its spec (1 s periods instead of 60 s), asks the Prometheus the chart installs (a
loopback stand-in, tests/support/pods/prometheus.py) for Karpenter's NodeClaim timings and the
kubelet's image pulls on the inf2 NodePool, and publishes each phase that happened."""
from __future__ import annotations

import math
import time

import boto3
import pytest

from tools import rendering
from sd21 import metric_names as names
from sd21.cold_start_metrics import queries
from tests.support.pods.prometheus import FakePrometheus

NODECLAIMS = "operator_nodeclaim_status_condition_transition_seconds"
PULLS = "kubelet_image_pull_duration_seconds"


def node_pool_name(synthesized, application) -> str:
    """The NodePool the cluster stack deploys, by its manifest (the pods' node label value)."""
    objects = rendering.all_objects(rendering.from_template_file(synthesized.template_file(application.cluster)))
    (pool,) = [o for o in objects if o["kind"] == "NodePool"]
    return pool["metadata"]["name"]


# The phases sd21-cold-start-metrics can publish (the replicas publish theirs under the same metric).
PHASES = set(queries("pool", "1s"))


def phase_values(cluster: str, since: float) -> dict[str, float]:
    """What this test's pod published: points stamped from `since` on (moto keeps every earlier
    test's points, and the server's and the metrics test's pods publish this metric too: read
    over a whole minute, their values made this test depend on which ran before it)."""
    client = boto3.client("cloudwatch")
    values = {}
    for metric in client.list_metrics(Namespace=names.CLOUDWATCH_NAMESPACE, MetricName=names.CW_COLD_START)["Metrics"]:
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        if dimensions.get(names.CLOUDWATCH_CLUSTER_DIMENSION) != cluster:
            continue
        if dimensions[names.CLOUDWATCH_PHASE_DIMENSION] not in PHASES:
            continue
        # Timestamps are aligned to the 1 s period: a whole second after `since` is this pod's.
        points = client.get_metric_statistics(
            Namespace=names.CLOUDWATCH_NAMESPACE, MetricName=names.CW_COLD_START, Dimensions=metric["Dimensions"],
            StartTime=math.ceil(since), EndTime=time.time() + 60, Period=1, Statistics=["Maximum"])["Datapoints"]
        if points:
            values[dimensions[names.CLOUDWATCH_PHASE_DIMENSION]] = max(p["Maximum"] for p in points)
    return values


@pytest.fixture
def prometheus(synthesized, application):
    pool = node_pool_name(synthesized, application)
    fake = FakePrometheus([
        ((NODECLAIMS, 'type="Launched"', 'status="Unknown"'), 41.5),
        ((NODECLAIMS, 'type="Registered"', 'status="Unknown"'), 63.0),
        ((NODECLAIMS, 'type="Initialized"', 'status="Unknown"'), float("nan")),  # no NodeClaim got there
        # Answers only a query on this NodePool's nodes that leaves out the small images.
        ((PULLS, f'karpenter_sh_nodepool="{pool}"', 'image_size_in_bytes!~"', '500MB-1GB'), 39.6),
    ])
    yield fake
    fake.close()


def test_node_launch_join_and_image_pull_reach_cloudwatch(cold_start_metrics_pod, prometheus, application, s3_env):
    started = time.time()
    container = cold_start_metrics_pod(prometheus.url, {"SD21_CLOUDWATCH_PERIOD_S": "1"})
    cluster = application.settings.cluster.cluster_name
    deadline, seen = time.monotonic() + 30, {}
    while time.monotonic() < deadline and set(seen) != {"node_launched", "node_registered", "image_pull"}:
        time.sleep(0.5)
        seen = phase_values(cluster, started)
    assert seen == {"node_launched": 41.5, "node_registered": 63.0, "image_pull": 39.6}, container.log()
    # Asked at the period's boundary, for that period's events only.
    query, at = prometheus.asked[0]
    assert at == int(at) and "[1s]" in query
    print(f"\npublished cold-start phases: {seen}")


def test_a_prometheus_that_does_not_answer_is_a_logged_warning_not_an_exit(cold_start_metrics_pod):
    container = cold_start_metrics_pod("http://127.0.0.1:9", {"SD21_CLOUDWATCH_PERIOD_S": "1"})
    warning = "warning: cold-start phases not published: ConnectError"
    deadline = time.monotonic() + 30
    while container.log().count(warning) < 2:  # two periods failed, and it is still there
        assert container.process.poll() is None and time.monotonic() < deadline, container.log()
        time.sleep(0.1)
    assert container.process.poll() is None, container.log()
    assert warning in container.log()
