"""The operators' dashboard, defined here and reviewed in change sets like everything else."""
from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from constructs import Construct
from sd21 import metric_names as names
from sd21.contract import SERVER_ERROR_TYPES

from stacks.workload.observability.alarms import EndpointAlarms
from stacks.workload.observability.metrics import EndpointMetrics

# sd21.service reports these (the stage initContainer's report and its own load and warm-up).
COLD_START_PHASES = ("stage", "load", "warmup", "stage_to_ready")
# Before our containers run, from Karpenter and the kubelet (sd21-cold-start-metrics): seconds
# from a NodeClaim's creation to launched, registered and initialized; and the image pull.
NODE_PHASES = ("node_launched", "node_registered", "node_initialized", "image_pull")


class EndpointDashboard(Construct):
    def __init__(self, scope: Construct, id: str, *, metrics: EndpointMetrics, alarms: EndpointAlarms,
                 latency_slo_seconds: float, inf2_hourly_usd: float, scales_to_zero: bool) -> None:
        super().__init__(scope, id)
        slo = cw.HorizontalAnnotation(value=latency_slo_seconds, label="SLO", color=cw.Color.RED)
        # One dashboard per cluster: named after the cluster whose metrics it shows.
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"sd21-{metrics.cluster_name}")
        self.dashboard.add_widgets(
            cw.SingleValueWidget(title="Now", width=24, height=4, metrics=[
                metrics.images_per_second(), metrics.latency("p90"), metrics.ready_replicas(),
                metrics.inf2_nodes(), metrics.cost_per_thousand_images(inf2_hourly_usd)]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Images per second", width=8, left=[metrics.images_per_second()]),
            cw.GraphWidget(title="Latency p50 / p90 / p99 (s)", width=8, left_annotations=[slo],
                           left=[metrics.latency(p) for p in ("p50", "p90", "p99")]),
            cw.GraphWidget(title="Queue depth and 429s", width=8,
                           left=[metrics.ours(names.CW_QUEUE_DEPTH, statistic="Maximum", label="queue depth (max)")],
                           right=[metrics.errors("overloaded")]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Errors by kind", width=8, stacked=True,
                           left=[metrics.errors(kind) for kind in SERVER_ERROR_TYPES]),
            cw.GraphWidget(title="Ready replicas vs running pods" + (" (and cold requests)" if scales_to_zero
                                                                     else ""), width=8,
                           left=[metrics.ready_replicas(), metrics.running_pods()],
                           right=[metrics.ours(names.CW_GATEWAY_REQUESTS, label="gateway requests"),
                                  metrics.ours(names.CW_COLD_REQUESTS, label="cold requests (503)"),
                                  metrics.ours(names.CW_HELD_REQUESTS, statistic="Maximum", label="held requests")]
                           if scales_to_zero else []),
            cw.GraphWidget(title="inf2 nodes and NeuronCore utilization", width=8,
                           left=[metrics.inf2_nodes()], right=[metrics.neuroncore_utilization()]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Device health: failures, Neuron errors, restarts", width=8,
                           left=[metrics.ours(names.CW_DEVICE_FAILURES, label="failed generations"),
                                 metrics.neuron_execution_errors(), metrics.neuron_hardware_errors(),
                                 metrics.server_restarts()]),
            cw.GraphWidget(title="Cost per 1000 images at the current rate (USD)", width=8,
                           left=[metrics.cost_per_thousand_images(inf2_hourly_usd)]),
            cw.AlarmStatusWidget(title="Alarms", width=8, alarms=alarms.alarms),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Cold start by phase (s): node launched, registered, initialized (from the "
                                 "NodeClaim's creation), image pull; staging, model load, warm-up, staging to ready"
                           + ("; at zero: wanted -> first answer" if scales_to_zero else ""),
                           width=24, left=[metrics.cold_start(phase) for phase in NODE_PHASES + COLD_START_PHASES]
                           + ([metrics.ours(names.CW_COLD_START_TOTAL, statistic="Maximum",
                                            label="wanted -> first answer (s)"), metrics.before_the_containers()]
                              if scales_to_zero else [])),
        )
