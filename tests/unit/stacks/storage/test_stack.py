"""The Storage stack alone (no other stack): it hands its units the settings they read."""
import json

import aws_cdk as cdk
from aws_cdk.assertions import Template

from stacks.settings import Settings, default_context
from stacks.storage.stack import StorageStack


def _storage(**overrides) -> tuple[StorageStack, dict]:
    settings = Settings.from_context({**default_context(), **overrides})
    stack = StorageStack(cdk.App(), "Storage", settings=settings)
    return stack, Template.from_stack(stack).to_json()["Resources"]


def test_the_bucket_repository_and_roles_follow_the_settings():
    stack, resources = _storage(clusterName="team-sandbox", modelName="my-model", modelNoncurrentVersionDays=12,
                                jobResultDays=2, ecrImagesKept=6, weightsSource="s3://mirror/sd21/")
    bucket = resources[stack.get_logical_id(stack.bucket.node.default_child)]["Properties"]
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert rules[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 12}
    assert rules[1]["Prefix"] == "models/my-model/.uploads/"
    assert (rules[2]["Prefix"], rules[2]["ExpirationInDays"]) == ("jobs/", 2)
    repository = resources[stack.get_logical_id(stack.repository.node.default_child)]["Properties"]
    assert repository["RepositoryName"] == "team-sandbox/model"
    assert '"countNumber":6' in repository["LifecyclePolicy"]["LifecyclePolicyText"]
    policies = json.dumps([r for r in resources.values() if r["Type"] == "AWS::IAM::Policy"])
    assert "mirror/sd21/*" in policies and "models/my-model/*" in policies
    assert stack.access.gateway_role is None


def test_at_zero_the_gateway_gets_a_role():
    stack, _ = _storage(minReplicas=0, acceptColdStarts=True)
    assert stack.access.gateway_role is not None
