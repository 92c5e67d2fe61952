"""Where the pipeline keeps its artifacts: a KMS-encrypted, TLS-only bucket with access logs.

The key also encrypts the pipeline's CodeBuild projects (CDK binds a project to the
artifact bucket's key) and the approval topic.
"""
from aws_cdk import Duration, RemovalPolicy, aws_kms as kms, aws_s3 as s3
from constructs import Construct

from stacks.access_logs import access_log_bucket

ARTIFACT_DAYS = 30


class ArtifactStore(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.key = kms.Key(
            self,
            "Key",
            description="sd21 release pipeline: artifacts, build projects, approval notifications",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_logs = access_log_bucket(self, "AccessLogs", logs_of="the pipeline artifact bucket")
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="pipeline-artifacts/",
            lifecycle_rules=[
                # Artifacts are per execution: a release older than this is not retried.
                s3.LifecycleRule(
                    expiration=Duration.days(ARTIFACT_DAYS),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
