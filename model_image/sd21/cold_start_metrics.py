"""sd21-cold-start-metrics: the phases of a cold start that happen before our containers
run, from Karpenter's and the kubelet's own metrics in the in-cluster Prometheus, to
CloudWatch (ColdStartSeconds by Phase, beside the replicas' own stage/load/warm-up).

Each period it asks Prometheus for the mean of the events of the last period, and
publishes only phases that had one (no point means nothing launched or pulled then):
* node_launched / node_registered / node_initialized: seconds from a NodeClaim's creation
  until Karpenter saw it Launched (the EC2 instance), Registered (the node joined) and
  Initialized (ready, its resources such as the Neuron devices advertised). Karpenter
  observes, when a condition changes, how long it spent in its previous status, labelled
  with that status; each of these is Unknown from the NodeClaim's creation until it is
  True. Metric: operator_nodeclaim_status_condition_transition_seconds{type,status}
  (BETA; awslabs/operatorpkg status/metrics.go and status/controller.go;
  karpenter-provider-aws website preview/reference/metrics.md); older releases name it
  operator_status_condition_transition_seconds{kind="NodeClaim"} (still emitted,
  deprecated), so both are asked.
* image_pull: seconds the kubelet took to pull an image of 1 GB or more on the inf2
  NodePool's nodes (the Neuron image; the small DaemonSet images are left out).
  Metric: kubelet_image_pull_duration_seconds{image_size_in_bytes} (ALPHA, Kubernetes
  1.30+; kubernetes/kubernetes pkg/kubelet/metrics/metrics.go, whose size buckets are
  "0-10MB", "10MB-100MB", "100MB-500MB", "500MB-1GB", "1GB-5GB", ... "GT100GB"), scraped
  by the prometheus chart's kubernetes-nodes job, which copies the node's labels
  (karpenter.sh/nodepool becomes karpenter_sh_nodepool).
The names and meanings are cited, not seen on a running cluster from here.
"""
from __future__ import annotations

import argparse
import math
import threading
import time
from typing import Callable, Optional

import httpx
from prometheus_client import CollectorRegistry, Gauge

from . import metric_names as names
from .cloudwatch import CloudWatchPublisher, Mapping
from .contract import ColdStartMetricsEnv
from .env import progress, read

GAUGE = "sd21_cluster_cold_start_seconds"
NODECLAIM_TRANSITIONS = "operator_nodeclaim_status_condition_transition_seconds"
ANY_TRANSITIONS = "operator_status_condition_transition_seconds"  # the deprecated name, with a kind label
IMAGE_PULLS = "kubelet_image_pull_duration_seconds"
NODE_CONDITIONS = {"node_launched": "Launched", "node_registered": "Registered", "node_initialized": "Initialized"}
SMALL_IMAGES = ("0-10MB", "10MB-100MB", "100MB-500MB", "500MB-1GB")
QUERY_TIMEOUT_S = 10.0


def _mean(metric: str, selector: str, window: str) -> str:
    """The mean of a histogram's observations in the window (NaN or empty when none)."""
    return (f"sum(increase({metric}_sum{{{selector}}}[{window}])) / "
            f"sum(increase({metric}_count{{{selector}}}[{window}]))")


def queries(node_pool: str, window: str) -> dict[str, str]:
    """Phase -> PromQL."""
    phases = {}
    for phase, condition in NODE_CONDITIONS.items():
        since_created = f'type="{condition}",status="Unknown"'
        of_node_claims = since_created + ',kind="NodeClaim"'
        phases[phase] = (f"({_mean(NODECLAIM_TRANSITIONS, since_created, window)}) or "
                         f"({_mean(ANY_TRANSITIONS, of_node_claims, window)})")
    small = "|".join(SMALL_IMAGES)
    phases["image_pull"] = _mean(IMAGE_PULLS, f'karpenter_sh_nodepool="{node_pool}",image_size_in_bytes!~"{small}"',
                                 window)
    return phases


class PrometheusClient:
    def __init__(self, url: str, client: Optional[httpx.Client] = None):
        self.url = url.rstrip("/")
        self.client = client or httpx.Client(timeout=QUERY_TIMEOUT_S)

    def value(self, query: str, at: float) -> Optional[float]:
        """An instant query's one value, or None when it has none (no series, or NaN)."""
        response = self.client.get(f"{self.url}/api/v1/query", params={"query": query, "time": f"{at:.3f}"})
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus answered {body.get('errorType')}: {body.get('error')}")
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            result = [{"value": result}]
        values = [float(item["value"][1]) for item in result]
        values = [v for v in values if math.isfinite(v)]
        return values[0] if values else None


class ColdStartPhases:
    """Each period: ask Prometheus, set the gauge for the phases that had events, publish."""

    def __init__(self, prometheus: PrometheusClient, node_pool: str, publisher_factory: Callable, period_s: float,
                 clock: Callable[[], float] = time.time):
        self.prometheus, self.period_s, self.clock = prometheus, period_s, clock
        self.window = f"{max(int(period_s), 1)}s"
        self.queries = queries(node_pool, self.window)
        self.registry = CollectorRegistry()
        self.gauge = Gauge(GAUGE, "Mean seconds of this cold-start phase over the last period, when it happened",
                           ["phase"], registry=self.registry)
        self.publisher: CloudWatchPublisher = publisher_factory(self.registry, MAPPINGS)
        self._shown: set[str] = set()  # phases the gauge has a value for
        self._stop = threading.Event()

    def refresh(self, at: float) -> dict[str, float]:
        seen = {}
        for phase, query in self.queries.items():
            value = self.prometheus.value(query, at)
            if value is not None:
                self.gauge.labels(phase).set(round(value, 3))
                seen[phase] = value
            elif phase in self._shown:
                self.gauge.remove(phase)  # nothing happened this period: no point, not the last one again
        self._shown = set(seen)
        return seen

    def once(self) -> dict[str, float]:
        now = self.clock()
        seen = self.refresh(now - now % self.period_s)
        self.publisher.publish_once()
        return seen

    def run(self) -> None:
        while not self._stop.wait(self.period_s - self.clock() % self.period_s):
            try:
                seen = self.once()
                if seen:
                    progress("cold-start phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(seen.items())))
            except Exception as error:  # noqa: BLE001 - the next period tries again
                progress(f"warning: cold-start phases not published: {type(error).__name__}: {error}")

    def stop(self) -> None:
        self._stop.set()


MAPPINGS = [Mapping(GAUGE, names.CW_COLD_START, "gauge", unit="Seconds", label="phase",
                    dimension=names.CLOUDWATCH_PHASE_DIMENSION)]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="one period now, print what was seen, and exit")
    args = parser.parse_args(argv)
    env = read(ColdStartMetricsEnv)  # all three names required; one line and exit 2 otherwise
    prometheus_url, node_pool, cluster, period = env.prometheus_url, env.node_pool, env.cluster, env.period_s

    def publisher(registry, mappings):
        return CloudWatchPublisher(registry, mappings, names.CLOUDWATCH_NAMESPACE, cluster, period)

    phases = ColdStartPhases(PrometheusClient(prometheus_url), node_pool, publisher, period)
    progress(f"cold-start phases from {prometheus_url} (NodePool {node_pool}) to CloudWatch namespace "
             f"{names.CLOUDWATCH_NAMESPACE}, {names.CLOUDWATCH_CLUSTER_DIMENSION}={cluster}, every {period:g}s")
    if args.once:
        print(phases.once())
        return 0
    phases.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
