"""The bucket that receives another bucket's S3 server access logs."""
from aws_cdk import Duration, RemovalPolicy, aws_s3 as s3
from constructs import Construct

from stacks.compliance import acknowledge


def access_log_bucket(scope: Construct, id: str, *, logs_of: str) -> s3.Bucket:
    bucket = s3.Bucket(
        scope,
        id,
        # S3 server access logging can only deliver to SSE-S3 buckets.
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
        lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
        removal_policy=RemovalPolicy.RETAIN,
    )
    acknowledge(bucket, "AwsSolutions-S1",
                f"This bucket is the server-access-log destination of {logs_of}; logging it into itself would loop.")
    return bucket
