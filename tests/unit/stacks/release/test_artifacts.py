"""The pipeline's artifact store alone: a rotated KMS key, a KMS-encrypted, versioned,
logged, TLS-only bucket whose artifacts expire."""
import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from stacks.release.artifacts import ARTIFACT_DAYS, ArtifactStore


def test_artifacts_are_kms_encrypted_logged_expiring_and_tls_only():
    stack = cdk.Stack(cdk.App(), "Test")
    store = ArtifactStore(stack, "Artifacts")
    template = Template.from_stack(stack)
    resources = template.to_json()["Resources"]
    key_id = stack.get_logical_id(store.key.node.default_child)
    bucket_id = stack.get_logical_id(store.bucket.node.default_child)
    assert resources[key_id]["Properties"]["EnableKeyRotation"] is True
    assert resources[key_id]["DeletionPolicy"] == resources[bucket_id]["DeletionPolicy"] == "Retain"
    bucket = resources[bucket_id]["Properties"]
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption == {"BucketKeyEnabled": True, "ServerSideEncryptionByDefault": {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}}
    assert bucket["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": stack.get_logical_id(store.access_logs.node.default_child)},
        "LogFilePrefix": "pipeline-artifacts/"}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == ARTIFACT_DAYS
    template.has_resource_properties("AWS::S3::BucketPolicy", {
        "Bucket": {"Ref": bucket_id},
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like(
            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
