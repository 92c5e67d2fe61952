"""The metrics the dashboard and alarms read, built once: ours (sd21.metric_names, what
the server and gateway publish) and Container Insights' (container_insights.py)."""
from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, aws_cloudwatch as cw
from sd21 import metric_names as names

from stacks.cluster.observability import container_insights as ci

PERIOD = Duration.minutes(1)
# The server's error kinds (the API's error types) that mean "the endpoint failed the request".
SERVER_FAILURES = ("internal", "unhealthy", "timeout")


@dataclass(frozen=True)
class EndpointMetrics:
    cluster_name: str
    namespace: str        # the workload's Kubernetes namespace
    deployment: str       # the inference Deployment (and Service) name

    def ours(self, name: str, statistic: str = "Sum", kind: str | None = None, label: str | None = None,
             dimension: str = names.CLOUDWATCH_KIND_DIMENSION) -> cw.Metric:
        dimensions = {names.CLOUDWATCH_CLUSTER_DIMENSION: self.cluster_name}
        if kind:
            dimensions[dimension] = kind
        return cw.Metric(namespace=names.CLOUDWATCH_NAMESPACE, metric_name=name, dimensions_map=dimensions,
                         statistic=statistic, period=PERIOD, label=label or (f"{name} {kind}" if kind else name))

    def insights(self, name: str, statistic: str, label: str, period: Duration = PERIOD, **dimensions) -> cw.Metric:
        return cw.Metric(namespace=ci.NAMESPACE, metric_name=name, statistic=statistic, period=period, label=label,
                         dimensions_map={"ClusterName": self.cluster_name, **dimensions})

    # -- ours -------------------------------------------------------------------------
    def images_per_second(self) -> cw.MathExpression:
        return cw.MathExpression(expression="images / PERIOD(images)", label="images/s", period=PERIOD,
                                 using_metrics={"images": self.ours(names.CW_IMAGES)})

    def latency(self, percentile: str) -> cw.Metric:
        return self.ours(names.CW_LATENCY, statistic=percentile, label=f"latency {percentile}")

    def errors(self, kind: str) -> cw.Metric:
        return self.ours(names.CW_ERRORS, kind=kind)

    def cold_start(self, phase: str) -> cw.Metric:
        """Seconds a phase of a replica's start took (the largest over the period's replicas)."""
        return self.ours(names.CW_COLD_START, statistic="Maximum", kind=phase, label=f"{phase} (s)",
                         dimension=names.CLOUDWATCH_PHASE_DIMENSION)

    def before_the_containers(self) -> cw.MathExpression:
        """A cold start's node launch and image pull: the gateway's whole cold start less what
        the replica measured from staging to ready (scale to zero only)."""
        return cw.MathExpression(
            expression="IF(total > 0, total - FILL(staged, 0), 0)", label="node launch + image pull (s)",
            period=PERIOD, using_metrics={
                "total": self.ours(names.CW_COLD_START_TOTAL, statistic="Maximum", label="wanted -> first answer (s)"),
                "staged": self.cold_start("stage_to_ready")})

    def failure_percent(self) -> cw.MathExpression:
        failures = {f"e{i}": self.errors(kind) for i, kind in enumerate(SERVER_FAILURES)}
        summed = " + ".join(f"FILL({key}, 0)" for key in failures)
        return cw.MathExpression(expression=f"IF(requests > 0, 100 * ({summed}) / requests, 0)",
                                 label="failed requests %", period=PERIOD,
                                 using_metrics={"requests": self.ours(names.CW_REQUESTS), **failures})

    def waiting_without_replica(self) -> cw.MathExpression:
        """Requests the gateway held or turned away because no replica was ready (scale to zero)."""
        return cw.MathExpression(expression="FILL(cold, 0) + FILL(held, 0)", label="requests waiting, no replica",
                                 period=PERIOD, using_metrics={
                                     "cold": self.ours(names.CW_COLD_REQUESTS, label="cold requests (503)"),
                                     "held": self.ours(names.CW_HELD_REQUESTS, statistic="Maximum",
                                                       label="held requests (max)")})

    def ready_replicas(self) -> cw.Metric:
        return self.ours(names.CW_READY, label="ready replicas")

    # -- Container Insights ----------------------------------------------------------
    def running_pods(self) -> cw.Metric:
        return self.insights(ci.RUNNING_PODS, "Average", "running pods (Container Insights)",
                             Service=self.deployment, Namespace=self.namespace)

    def server_restarts(self) -> cw.Metric:
        # PodName is the pod's name without its generated suffix (Container Insights); for a
        # Deployment's pods that is taken to be the Deployment's name: not verified on a cluster.
        return self.insights(ci.CONTAINER_RESTARTS, "Sum", "server restarts", period=Duration.minutes(10),
                             PodName=self.deployment, Namespace=self.namespace)

    def inf2_nodes(self) -> cw.MathExpression:
        """Nodes reporting Neuron metrics: one per inf2 node (SEARCH, so dashboards only)."""
        search = (f"SEARCH('{{{ci.NAMESPACE},ClusterName,InstanceId,NodeName}} "
                  f"MetricName=\"{ci.NEURONCORE_UTILIZATION}\" ClusterName=\"{self.cluster_name}\"', 'Average', 60)")
        return cw.MathExpression(expression=f"SUM({search} * 0 + 1)", label="inf2 nodes", period=PERIOD,
                                 using_metrics={})

    def neuroncore_utilization(self) -> cw.Metric:
        return self.insights(ci.NEURONCORE_UTILIZATION, "Average", "NeuronCore utilization %")

    def neuron_hardware_errors(self) -> cw.Metric:
        return self.insights(ci.NEURON_ECC_EVENTS, "Sum", "Neuron ECC events")

    def neuron_execution_errors(self) -> cw.Metric:
        return self.insights(ci.NEURON_EXECUTION_ERRORS, "Sum", "Neuron execution errors")

    def failed_nodes(self) -> cw.Metric:
        return self.insights(ci.FAILED_NODES, "Maximum", "failed nodes")

    def cost_per_thousand_images(self, hourly_usd: float) -> cw.MathExpression:
        nodes = self.inf2_nodes()
        return cw.MathExpression(
            expression=f"IF(images > 0, ({nodes.expression}) * {hourly_usd} / 60 / images * 1000, 0)",
            label=f"$ per 1000 images (inf2 nodes x ${hourly_usd}/h / images)", period=PERIOD,
            using_metrics={"images": self.ours(names.CW_IMAGES)})
