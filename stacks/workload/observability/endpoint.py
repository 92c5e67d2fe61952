"""The endpoint's dashboard and alarms, and the right of its pods to publish the figures
they read (cloudwatch:PutMetricData, in our namespace only)."""
from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct
from sd21.metric_names import CLOUDWATCH_NAMESPACE

from stacks.compliance import acknowledge_all, wildcard_findings
from stacks.workload.observability.alarms import EndpointAlarms
from stacks.workload.observability.dashboard import EndpointDashboard
from stacks.workload.observability.metrics import EndpointMetrics


def publish_metrics_statement() -> iam.PolicyStatement:
    # The condition key cloudwatch:namespace (CloudWatch's IAM condition keys for PutMetricData)
    # is not verified from here; tests/pods checks only that publishing works against moto.
    return iam.PolicyStatement(sid="PublishEndpointMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
                               conditions={"StringEquals": {"cloudwatch:namespace": CLOUDWATCH_NAMESPACE}})


def allow_publishing(scope: Construct, id: str, roles: list[iam.IRole]) -> iam.Policy:
    statements = [publish_metrics_statement()]
    policy = iam.Policy(scope, id, statements=statements, roles=roles)
    acknowledge_all(policy, wildcard_findings(policy, statements),
                    "cloudwatch:PutMetricData has no resource-level permissions; the cloudwatch:namespace "
                    "condition limits it to the endpoint's own namespace.")
    return policy


class EndpointObservability(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster_name: str, namespace: str, deployment: str,
                 publishers: list[iam.IRole], scales_to_zero: bool, alarm_email: str | None,
                 no_ready_replica_minutes: int, error_ratio_alarm_percent: float, latency_slo_seconds: float,
                 inf2_hourly_usd: float) -> None:
        super().__init__(scope, id)
        self.metrics = EndpointMetrics(cluster_name, namespace, deployment)
        self.alarms = EndpointAlarms(self, "Alarms", metrics=self.metrics, email=alarm_email,
                                     scales_to_zero=scales_to_zero, no_ready_replica_minutes=no_ready_replica_minutes,
                                     error_ratio_percent=error_ratio_alarm_percent,
                                     latency_slo_seconds=latency_slo_seconds)
        self.dashboard = EndpointDashboard(self, "Dashboard", metrics=self.metrics, alarms=self.alarms,
                                           latency_slo_seconds=latency_slo_seconds, inf2_hourly_usd=inf2_hourly_usd,
                                           scales_to_zero=scales_to_zero)
        self.publishing = allow_publishing(self, "PublishMetrics", publishers)
