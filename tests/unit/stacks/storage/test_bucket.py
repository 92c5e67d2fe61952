"""The model bucket alone: private, encrypted, versioned, logged, retained, TLS only, and
its lifecycle rules from its props."""
import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from stacks.storage.bucket import ModelBucket


def _bucket(**props) -> tuple[cdk.Stack, ModelBucket]:
    stack = cdk.Stack(cdk.App(), "Test")
    props = {"model_name": "sd21", "noncurrent_version_days": 11, "job_result_days": 3, **props}
    return stack, ModelBucket(stack, "ModelBucket", **props)


def _resource(stack: cdk.Stack, construct) -> dict:
    return Template.from_stack(stack).to_json()["Resources"][stack.get_logical_id(construct.node.default_child)]


def test_the_bucket_is_encrypted_private_versioned_logged_and_retained():
    stack, models = _bucket()
    bucket = _resource(stack, models.bucket)
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": stack.get_logical_id(models.access_logs.node.default_child)},
        "LogFilePrefix": "models-bucket/"}


def test_the_bucket_policy_denies_plain_http():
    stack, models = _bucket()
    Template.from_stack(stack).has_resource_properties("AWS::S3::BucketPolicy", {
        "Bucket": {"Ref": stack.get_logical_id(models.bucket.node.default_child)},
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Action": "s3:*", "Principal": {"AWS": "*"},
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        })])},
    })


def test_lifecycle_keeps_old_versions_its_days_drops_stale_uploads_and_expires_jobs():
    stack, models = _bucket(model_name="my-model", noncurrent_version_days=11, job_result_days=3)
    rules = _resource(stack, models.bucket)["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rules == [
        {"NoncurrentVersionExpiration": {"NoncurrentDays": 11},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}, "Status": "Enabled"},
        {"Prefix": "models/my-model/.uploads/", "ExpirationInDays": 7, "Status": "Enabled"},
        {"Prefix": "jobs/", "ExpirationInDays": 3, "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
         "Status": "Enabled"},
    ]
