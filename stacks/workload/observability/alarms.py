"""Alarms that page (an SNS topic, e-mail optional), each saying what to look at first."""
from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw, aws_cloudwatch_actions as actions, aws_iam as iam
from aws_cdk import aws_kms as kms, aws_sns as sns, aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.workload.observability.metrics import EndpointMetrics

GT, GE, LT = (cw.ComparisonOperator.GREATER_THAN_THRESHOLD, cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
              cw.ComparisonOperator.LESS_THAN_THRESHOLD)


class EndpointAlarms(Construct):
    def __init__(self, scope: Construct, id: str, *, metrics: EndpointMetrics, email: str | None,
                 scales_to_zero: bool, no_ready_replica_minutes: int, error_ratio_percent: float,
                 latency_slo_seconds: float) -> None:
        super().__init__(scope, id)
        # CloudWatch can publish to an encrypted topic only with a customer managed key
        # whose policy lets it use the key.
        key = kms.Key(self, "TopicKey", enable_key_rotation=True, description="sd21 alarm topic")
        key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"]))
        self.topic = sns.Topic(self, "Topic", display_name="sd21 endpoint alarms", master_key=key, enforce_ssl=True)
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.alarms: list[cw.Alarm] = []
        minutes = no_ready_replica_minutes
        if scales_to_zero:
            self._alarm("NoReadyReplica", metrics.waiting_without_replica(), GE, 1,
                        minutes, minutes, cw.TreatMissingData.NOT_BREACHING,
                        f"Requests arrived and no replica was ready for {minutes} min (the gateway held them or "
                        "answered 503). "
                        "First: kubectl -n sd21 get pods,scaledobject; Karpenter's log for the inf2 node launch; "
                        "the stage initContainer's log for the model download.")
        else:
            self._alarm("NoReadyReplica", metrics.ready_replicas(), LT, 1, minutes, minutes,
                        cw.TreatMissingData.BREACHING,
                        f"No inference replica was ready for {minutes} min. First: kubectl -n sd21 get pods "
                        "(Pending: Karpenter's log and the inf2 NodePool; CrashLoopBackOff: the server's last "
                        "'error:' line); then the dashboard's Neuron and node widgets.")
        self._alarm("FailedRequests", metrics.failure_percent(), GT, error_ratio_percent, 3, 3,
                    cw.TreatMissingData.NOT_BREACHING,
                    f"More than {error_ratio_percent}% of requests failed (500, 503 unhealthy, 504) "
                    "for 3 min. First: the dashboard's errors by kind; 'unhealthy' means a device broke (look at "
                    "Neuron errors and server restarts), 'timeout' means the queue waits too long.")
        self._alarm("LatencyP90", metrics.latency("p90"), GT, latency_slo_seconds, 5, 3,
                    cw.TreatMissingData.NOT_BREACHING,
                    f"p90 latency above the {latency_slo_seconds}s SLO in 3 of 5 min. First: queue depth "
                    "and ready replicas vs running pods (is scale-out stuck on a Pending pod?), then "
                    "NeuronCore utilization.")
        self._alarm("QueueFull", metrics.errors("overloaded"), GE, 1, 5, 5, cw.TreatMissingData.NOT_BREACHING,
                    "Requests refused with 429 (queue full) every minute for 5 min: demand exceeds capacity. "
                    "First: are replicas at maxReplicas, or is a new one Pending (inf2 capacity or the "
                    "NodePool's limits)?")
        self._alarm("NeuronHardwareErrors", metrics.neuron_hardware_errors(), GE, 1, 1, 1,
                    cw.TreatMissingData.NOT_BREACHING,
                    "A Neuron device reported ECC (memory) errors. First: which node (dashboard, per instance), "
                    "its AcceleratedHardwareReady condition; Karpenter's node repair replaces it after 10 min "
                    "if the condition is False.")
        self._alarm("ServerRestarts", metrics.server_restarts(), GE, 3, 1, 1, cw.TreatMissingData.NOT_BREACHING,
                    "Inference containers restarted 3+ times in 10 min (device unhealthy: exit 8; no device: "
                    "exit 7; model did not load: exit 1). First: the server's last 'error:' line, then its node's "
                    "conditions; a node whose device is broken is repaired by Karpenter.")
        self._alarm("NodeUnhealthy", metrics.failed_nodes(), GE, 1, 10, 10, cw.TreatMissingData.NOT_BREACHING,
                    "A node has been failing for 10 min. Karpenter's node repair replaces inf2 nodes whose "
                    "AcceleratedHardwareReady is False after 10 min and NotReady nodes after 30 min; if it "
                    "persists, look at the node's conditions and Karpenter's log (repair is skipped when more "
                    "than 20% of the NodePool is unhealthy).")

    def _alarm(self, id: str, metric: cw.IMetric, comparison: cw.ComparisonOperator, threshold: float,
               evaluation_periods: int, datapoints: int, missing: cw.TreatMissingData, description: str) -> None:
        alarm = cw.Alarm(self, id, metric=metric, comparison_operator=comparison, threshold=threshold,
                         evaluation_periods=evaluation_periods, datapoints_to_alarm=datapoints,
                         treat_missing_data=missing, alarm_description=description)
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
