"""The job queue (SSE, TLS-only) with a dead-letter queue after `jobMaxAttempts` receives,
and an encrypted topic that announces every finished job. Requests, status and results
live under jobs/ in the model bucket: the lifecycle rule and the object permissions
are beside the bucket (stacks/storage/bucket.py and access.py)."""
from __future__ import annotations

from aws_cdk import Duration, aws_iam as iam, aws_kms as kms, aws_sns as sns, aws_sqs as sqs
from constructs import Construct
from sd21.contract import JobsEnv

from stacks.compliance import acknowledge_all, wildcard_findings


def visibility_seconds(request_timeout_seconds: int) -> int:
    """Longer than the longest generation (the request timeout); the worker extends it while
    it works, so a live job never reappears and a dead pod's job does within this."""
    return max(60, 2 * request_timeout_seconds)


class JobQueue(Construct):
    def __init__(self, scope: Construct, id: str, *, request_timeout_seconds: int, max_attempts: int,
                 url_expires_seconds: int) -> None:
        super().__init__(scope, id)
        self.max_attempts = max_attempts
        self.visibility_seconds = visibility_seconds(request_timeout_seconds)
        self.url_expires_seconds = url_expires_seconds
        self.dead_letters = sqs.Queue(self, "DeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                      enforce_ssl=True, retention_period=Duration.days(14))
        self.queue = sqs.Queue(
            self, "Queue", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            visibility_timeout=Duration.seconds(self.visibility_seconds), retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=max_attempts, queue=self.dead_letters))
        self.key = kms.Key(self, "TopicKey", enable_key_rotation=True, description="sd21 finished-jobs topic")
        self.topic = sns.Topic(self, "Finished", display_name="sd21 finished jobs", master_key=self.key,
                               enforce_ssl=True)

    def env(self) -> dict[str, str]:
        """What the server and the gateway read of the queue (sd21.contract.JobsEnv; the bucket
        is the workload's). The URLs and the ARN are tokens until deploy."""
        return JobsEnv(queue_url=self.queue.queue_url, dead_letter_url=self.dead_letters.queue_url,
                       topic_arn=self.topic.topic_arn, max_attempts=self.max_attempts,
                       visibility_s=self.visibility_seconds, url_expires_s=self.url_expires_seconds).to_env()

    def enqueue_statements(self) -> list[iam.PolicyStatement]:
        """Send only (the request object: stacks/storage/access.py)."""
        return [iam.PolicyStatement(sid="SendJobs", actions=["sqs:SendMessage"], resources=[self.queue.queue_arn])]

    def work_statements(self) -> list[iam.PolicyStatement]:
        """Receive, delete and extend; mark dead letters; announce (results: access.py)."""
        return [
            iam.PolicyStatement(sid="WorkJobs", resources=[self.queue.queue_arn], actions=[
                "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]),
            iam.PolicyStatement(sid="ReadDeadLetters", resources=[self.dead_letters.queue_arn], actions=[
                "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"]),
            iam.PolicyStatement(sid="AnnounceJobs", actions=["sns:Publish"], resources=[self.topic.topic_arn]),
            iam.PolicyStatement(sid="EncryptAnnouncements", actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                                resources=[self.key.key_arn]),
        ]

    def depth_statements(self) -> list[iam.PolicyStatement]:
        """What KEDA needs to scale on the queue."""
        return [iam.PolicyStatement(sid="ReadQueueDepth", actions=["sqs:GetQueueAttributes"],
                                    resources=[self.queue.queue_arn])]

    def grant(self, scope: Construct, id: str, role: iam.IRole, statements: list[iam.PolicyStatement]) -> iam.Policy:
        policy = iam.Policy(scope, id, statements=statements, roles=[role])
        acknowledge_all(policy, wildcard_findings(policy, statements),
                        "kms:GenerateDataKey* names the GenerateDataKey variants SNS uses to encrypt a "
                        "publication, on the topic's own key only.")
        return policy
