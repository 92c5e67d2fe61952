"""The SNS topic that tells operators a change set (or a permissions broadening) waits for review."""
from aws_cdk import aws_kms as kms, aws_sns as sns, aws_sns_subscriptions as subscriptions
from constructs import Construct


class ApprovalNotifications(Construct):
    def __init__(self, scope: Construct, id: str, *, key: kms.IKey, email: str | None) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="sd21 release: change sets waiting for approval",
            master_key=key,
            enforce_ssl=True,
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
