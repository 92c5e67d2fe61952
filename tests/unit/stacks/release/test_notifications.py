"""The approval topic alone: encrypted with the given key, TLS only, and an e-mail
subscription only when an address is given."""
import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Match, Template

from stacks.release.notifications import ApprovalNotifications


def _template(email: str | None) -> tuple[cdk.Stack, kms.Key, Template]:
    stack = cdk.Stack(cdk.App(), "Test")
    key = kms.Key(stack, "Key")
    ApprovalNotifications(stack, "Approvals", key=key, email=email)
    return stack, key, Template.from_stack(stack)


def test_the_topic_is_encrypted_with_the_key_and_tls_only_without_subscription_by_default():
    stack, key, template = _template(None)
    template.has_resource_properties("AWS::SNS::Topic", {
        "KmsMasterKeyId": {"Fn::GetAtt": [stack.get_logical_id(key.node.default_child), "Arn"]}})
    template.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
    assert template.find_resources("AWS::SNS::Subscription") == {}


def test_the_topic_subscribes_the_given_email():
    _, _, template = _template("ops@example.com")
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
