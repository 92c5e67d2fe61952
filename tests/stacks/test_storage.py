"""Model bucket and image repository."""
from aws_cdk.assertions import Match
from stacks.release.commands import IMAGES as IMAGES_EACH_RELEASE_PUSHES


def test_bucket_is_encrypted_private_versioned_logged_and_retained(synthesized, application):
    template = synthesized.template(application.storage)
    bucket_id = application.storage.get_logical_id(application.storage.bucket.node.default_child)
    bucket = template.to_json()["Resources"][bucket_id]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["DestinationBucketName"]
    rule = props["LifecycleConfiguration"]["Rules"][0]
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == application.settings.model_noncurrent_version_days


def test_bucket_policy_denies_plain_http(synthesized, application):
    template = synthesized.template(application.storage)
    bucket_id = application.storage.get_logical_id(application.storage.bucket.node.default_child)
    template.has_resource_properties("AWS::S3::BucketPolicy", {
        "Bucket": {"Ref": bucket_id},
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Action": "s3:*", "Principal": {"AWS": "*"},
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        })])},
    })


def test_repository_scans_keeps_tags_immutable_and_prunes(synthesized, application):
    template = synthesized.template(application.storage)
    template.has_resource("AWS::ECR::Repository", {
        "DeletionPolicy": "Retain",
        "Properties": Match.object_like({
            "ImageScanningConfiguration": {"ScanOnPush": True},
            "ImageTagMutability": "IMMUTABLE",
            "LifecyclePolicy": {"LifecyclePolicyText": Match.string_like_regexp(
                f'"countNumber":{application.settings.ecr_images_kept * len(IMAGES_EACH_RELEASE_PUSHES)}')},
        }),
    })
