"""Publish the server's (or gateway's) Prometheus figures to CloudWatch, once a period.

The in-cluster Prometheus drives autoscaling; CloudWatch is where the dashboard and the
alarms live (stacks/observability), reviewed in change sets with the rest. Each period:
counters as the increase since the last one, gauges as they are now, the latency
histogram as Values/Counts (each bucket's upper bound, so CloudWatch percentiles read
at bucket resolution and never below the truth). Timestamps are aligned to the period,
so every replica contributes exactly one ReadyReplicas point per period and its Sum
counts the ready replicas. PutMetricData only, in one namespace (the IAM policy's
condition); a failed call is logged and retried with the next period's figures.
"""
from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from prometheus_client import CollectorRegistry

from .contract import CloudWatchEnv
from .env import progress
from .metric_names import CLOUDWATCH_CLUSTER_DIMENSION, CLOUDWATCH_KIND_DIMENSION


@dataclass(frozen=True)
class Mapping:
    """One Prometheus sample family -> one CloudWatch metric."""
    prometheus: str     # the family name as collected (counters without _total)
    cloudwatch: str
    kind: str           # "counter", "gauge" or "histogram"
    unit: str = "Count"
    label: Optional[str] = None  # a Prometheus label that becomes a dimension ...
    dimension: str = CLOUDWATCH_KIND_DIMENSION  # ... named this


class CloudWatchPublisher:
    def __init__(self, registry: CollectorRegistry, mappings: list[Mapping], namespace: str, cluster: str,
                 period_s: float = CloudWatchEnv.period_s, client=None, clock: Callable[[], float] = time.time):
        self.registry, self.mappings, self.namespace = registry, mappings, namespace
        self.dimensions = [{"Name": CLOUDWATCH_CLUSTER_DIMENSION, "Value": cluster}]
        self.period_s, self._clock = period_s, clock
        self._client = client
        self._last: dict[tuple, float] = {}  # counter/bucket values at the last publish
        self._stop = threading.Event()

    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("cloudwatch")
        return self._client

    def collect(self, timestamp: datetime.datetime) -> list[dict]:
        """The metric data for this period (and remember where the counters stood)."""
        samples = {}
        for family in self.registry.collect():
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        data = []
        for mapping in self.mappings:
            if mapping.kind == "histogram":
                data += self._histogram(mapping, samples, timestamp)
                continue
            name = mapping.prometheus + ("_total" if mapping.kind == "counter" else "")
            for (sample, labels), value in samples.items():
                if sample != name:
                    continue
                dimensions = list(self.dimensions)
                if mapping.label:
                    kind = dict(labels).get(mapping.label)
                    if kind is None:
                        continue
                    dimensions.append({"Name": mapping.dimension, "Value": kind})
                if mapping.kind == "counter":
                    value, self._last[(sample, labels)] = value - self._last.get((sample, labels), 0.0), value
                data.append({"MetricName": mapping.cloudwatch, "Dimensions": dimensions, "Timestamp": timestamp,
                             "Value": value, "Unit": mapping.unit})
        return data

    def _histogram(self, mapping: Mapping, samples: dict, timestamp) -> list[dict]:
        buckets = sorted(((float(dict(labels)["le"]), value) for (name, labels), value in samples.items()
                          if name == mapping.prometheus + "_bucket"), key=lambda item: item[0])
        values, counts, below = [], [], 0.0
        finite = [bound for bound, _ in buckets if bound != float("inf")]
        for bound, cumulative in buckets:
            key = (mapping.prometheus + "_bucket", bound)
            increase = cumulative - self._last.get(key, 0.0)
            self._last[key] = cumulative
            in_bucket = increase - below
            below = increase
            if in_bucket > 0:
                # Past the last bound: twice it, a value no finite bucket would give.
                values.append(bound if bound != float("inf") else 2 * (finite[-1] if finite else 1.0))
                counts.append(in_bucket)
        if not values:
            return []
        return [{"MetricName": mapping.cloudwatch, "Dimensions": self.dimensions, "Timestamp": timestamp,
                 "Values": values, "Counts": counts, "Unit": mapping.unit}]

    def publish_once(self) -> int:
        now = self._clock()
        aligned = datetime.datetime.fromtimestamp(now - now % self.period_s, tz=datetime.timezone.utc)
        data = self.collect(aligned)
        for start in range(0, len(data), 500):  # PutMetricData's limit per call (1000 since 2023)
            self.client().put_metric_data(Namespace=self.namespace, MetricData=data[start:start + 500])
        return len(data)

    def run(self) -> None:
        while not self._stop.wait(self.period_s - self._clock() % self.period_s):
            try:
                self.publish_once()
            except Exception as error:  # noqa: BLE001 - metrics must never take serving down
                progress(f"warning: CloudWatch metrics not published: {type(error).__name__}: {error}")

    def start(self) -> "CloudWatchPublisher":
        threading.Thread(target=self.run, name="cloudwatch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def from_env(registry: CollectorRegistry, mappings: list[Mapping], environ=None) -> Optional[CloudWatchPublisher]:
    """Started when the environment names a cluster (sd21.contract.CloudWatchEnv; the chart
    sets it); None otherwise. A bad value raises ContractError (the entrypoints, which parse
    their whole environment first, have refused it already)."""
    import os

    from .metric_names import CLOUDWATCH_NAMESPACE

    env = CloudWatchEnv.from_env(os.environ if environ is None else environ)
    if not env.cluster:
        return None
    progress(f"publishing metrics to CloudWatch namespace {CLOUDWATCH_NAMESPACE}, {CLOUDWATCH_CLUSTER_DIMENSION}="
             f"{env.cluster}, every {env.period_s:g}s")
    return CloudWatchPublisher(registry, mappings, CLOUDWATCH_NAMESPACE, env.cluster, env.period_s).start()
