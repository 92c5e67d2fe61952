"""The S3 bucket that holds compiled model artifacts under models/<name>/<version>/."""
from aws_cdk import Duration, RemovalPolicy, aws_s3 as s3
from constructs import Construct
from sd21.contract import JOBS_PREFIX

from stacks.access_logs import access_log_bucket


class ModelBucket(Construct):
    def __init__(self, scope: Construct, id: str, *, model_name: str, noncurrent_version_days: int,
                 job_result_days: int) -> None:
        super().__init__(scope, id)
        self.access_logs = access_log_bucket(self, "AccessLogs", logs_of="the model bucket")
        self.bucket = s3.Bucket(
            self,
            "Models",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="models-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                # A compile that crashed mid-upload leaves its temporary keys here.
                s3.LifecycleRule(prefix=f"models/{model_name}/.uploads/", expiration=Duration.days(7)),
                # Async jobs' requests, status and images (sd21.contract.JOBS_PREFIX) are short-lived.
                s3.LifecycleRule(prefix=JOBS_PREFIX, expiration=Duration.days(job_result_days),
                                 noncurrent_version_expiration=Duration.days(1)),
            ],
            # Compiled artifacts take an hour of compute each: never drop them with the stack.
            removal_policy=RemovalPolicy.RETAIN,
        )
