"""SQS queue that EventBridge fills with the events Karpenter drains nodes on."""
from aws_cdk import Duration, aws_events as events, aws_events_targets as targets, aws_iam as iam, aws_sqs as sqs
from constructs import Construct

from stacks.compliance import acknowledge

# (rule id, source, detail-type) spelled exactly as AWS emits them.
INTERRUPTION_EVENTS = (
    ("HealthEvent", "aws.health", "AWS Health Event"),
    ("SpotInterruption", "aws.ec2", "EC2 Spot Instance Interruption Warning"),
    ("RebalanceRecommendation", "aws.ec2", "EC2 Instance Rebalance Recommendation"),
    ("InstanceStateChange", "aws.ec2", "EC2 Instance State-change Notification"),
    ("CapacityReservationInterruption", "aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
)


class InterruptionQueue(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.queue = sqs.Queue(
            self,
            "Queue",
            retention_period=Duration.seconds(300),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        acknowledge(self.queue, "AwsSolutions-SQS3",
                    "Interruption events matter for minutes (300 s retention, as Karpenter documents); "
                    "Karpenter deletes each message it handles, so a DLQ would only hold stale events.")
        for rule_id, source, detail_type in INTERRUPTION_EVENTS:
            rule = events.Rule(
                self,
                rule_id,
                event_pattern=events.EventPattern(source=[source], detail_type=[detail_type]),
            )
            rule.add_target(targets.SqsQueue(self.queue))
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EC2InterruptionEvents",
                principals=[iam.ServicePrincipal("events.amazonaws.com"), iam.ServicePrincipal("sqs.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
            )
        )
