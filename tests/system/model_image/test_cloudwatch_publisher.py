"""The server's and gateway's figures reach CloudWatch as the dashboard and alarms read them."""
from __future__ import annotations

import datetime

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sd21.cloudwatch import CloudWatchPublisher, Mapping

MAPPINGS = [
    Mapping("t_images", "Images", "counter"),
    Mapping("t_errors", "Errors", "counter", label="kind"),
    Mapping("t_ready", "ReadyReplicas", "gauge"),
    Mapping("t_latency_seconds", "Latency", "histogram", unit="Seconds"),
]


class Recorder:
    def __init__(self):
        self.calls = []

    def put_metric_data(self, **kwargs):
        self.calls.append(kwargs)


@pytest.fixture
def figures():
    registry = CollectorRegistry()
    metrics = dict(images=Counter("t_images", "", registry=registry),
                   errors=Counter("t_errors", "", ["kind"], registry=registry),
                   ready=Gauge("t_ready", "", registry=registry),
                   latency=Histogram("t_latency_seconds", "", registry=registry, buckets=(1, 5, 10)))
    clock = [1_000_000_030.5]
    recorder = Recorder()
    publisher = CloudWatchPublisher(registry, MAPPINGS, "SD21", "my-cluster", period_s=60, client=recorder,
                                    clock=lambda: clock[0])
    return metrics, publisher, recorder, clock


def by_name(call):
    return {(d["MetricName"], tuple(x["Value"] for x in d["Dimensions"])): d for d in call["MetricData"]}


def test_counters_are_increases_per_period_gauges_as_they_are(figures):
    metrics, publisher, recorder, clock = figures
    metrics["images"].inc(3)
    metrics["errors"].labels("overloaded").inc(2)
    metrics["ready"].set(1)
    publisher.publish_once()
    metrics["images"].inc(4)
    metrics["ready"].set(0)
    clock[0] += 60
    publisher.publish_once()
    first, second = (by_name(call) for call in recorder.calls)
    assert recorder.calls[0]["Namespace"] == "SD21"
    assert first[("Images", ("my-cluster",))]["Value"] == 3 and second[("Images", ("my-cluster",))]["Value"] == 4
    assert first[("Errors", ("my-cluster", "overloaded"))]["Value"] == 2
    assert second[("Errors", ("my-cluster", "overloaded"))]["Value"] == 0
    assert first[("ReadyReplicas", ("my-cluster",))]["Value"] == 1
    assert second[("ReadyReplicas", ("my-cluster",))]["Value"] == 0
    assert first[("Errors", ("my-cluster", "overloaded"))]["Dimensions"] == [
        {"Name": "Cluster", "Value": "my-cluster"}, {"Name": "Kind", "Value": "overloaded"}]


def test_timestamps_are_aligned_to_the_period(figures):
    metrics, publisher, recorder, clock = figures
    metrics["ready"].set(1)
    publisher.publish_once()
    (point,) = [d for d in recorder.calls[0]["MetricData"] if d["MetricName"] == "ReadyReplicas"]
    assert point["Timestamp"] == datetime.datetime.fromtimestamp(1_000_000_020, tz=datetime.timezone.utc)


def test_latency_goes_as_bucket_bounds_with_counts(figures):
    metrics, publisher, recorder, clock = figures
    for seconds in (0.5, 0.7, 3, 9, 50):
        metrics["latency"].observe(seconds)
    publisher.publish_once()
    metrics["latency"].observe(4)
    publisher.publish_once()
    publisher.publish_once()  # nothing new: no latency point at all
    first, second, third = (by_name(call) for call in recorder.calls)
    latency = first[("Latency", ("my-cluster",))]
    assert latency["Values"] == [1, 5, 10, 20] and latency["Counts"] == [2, 1, 1, 1] and latency["Unit"] == "Seconds"
    assert second[("Latency", ("my-cluster",))]["Values"] == [5] and second[("Latency", ("my-cluster",))]["Counts"] == [1]
    assert ("Latency", ("my-cluster",)) not in third


def test_the_calls_are_valid_cloudwatch_requests(s3_env):
    """The same publisher against the session's loopback moto (its CloudWatch), read back by
    statistic. (Not mock_aws: leaving it would reset the backends the session's server shares.)"""
    import uuid

    import boto3

    client = boto3.client("cloudwatch")
    cluster = f"c-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    images = Counter("t_images", "", registry=registry)
    latency = Histogram("t_latency_seconds", "", registry=registry, buckets=(1, 5, 10))
    images.inc(7)
    latency.observe(3)
    publisher = CloudWatchPublisher(registry, MAPPINGS, "SD21", cluster, client=client)
    assert publisher.publish_once() == 2  # Images and Latency (no errors, no gauge here)
    now = datetime.datetime.now(datetime.timezone.utc)
    stats = client.get_metric_statistics(
        Namespace="SD21", MetricName="Images", Dimensions=[{"Name": "Cluster", "Value": cluster}],
        StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=1),
        Period=60, Statistics=["Sum"])
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 7


def test_publishing_is_off_unless_the_chart_names_the_cluster():
    from sd21.cloudwatch import from_env
    from sd21.contract import CloudWatchEnv, ContractError

    assert from_env(CollectorRegistry(), MAPPINGS, environ={}) is None
    with pytest.raises(ContractError, match="SD21_CLOUDWATCH_PERIOD_S"):
        from_env(CollectorRegistry(), MAPPINGS, environ=CloudWatchEnv(cluster="c1", period_s=0).to_env())
