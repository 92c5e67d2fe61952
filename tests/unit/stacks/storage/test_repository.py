"""The image repository alone: a fixed name from the cluster name, scanned, immutable tags,
retained, and pruned by its props (the compile images of recent versions first)."""
import json

import aws_cdk as cdk
from aws_cdk.assertions import Template

from stacks.release.commands import IMAGES as IMAGES_EACH_RELEASE_PUSHES
from stacks.storage.repository import (IMAGES_PER_RELEASE, ModelImageRepository, compile_tag, gateway_tag,
                                       repository_name)


def _repository(**props) -> dict:
    stack = cdk.Stack(cdk.App(), "Test")
    ModelImageRepository(stack, "ModelImage", **{"cluster_name": "sd21", "images_kept": 5, **props})
    (resource,) = Template.from_stack(stack).find_resources("AWS::ECR::Repository").values()
    return resource


def test_the_name_is_a_slug_of_the_cluster_name():
    assert repository_name("sd21") == "sd21/model"
    assert repository_name("My_Sandbox.2") == "my-sandbox-2/model"
    assert _repository(cluster_name="Team A")["Properties"]["RepositoryName"] == "team-a/model"


def test_the_repository_scans_keeps_tags_immutable_and_is_retained():
    resource = _repository()
    assert resource["DeletionPolicy"] == "Retain"
    props = resource["Properties"]
    assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert props["ImageTagMutability"] == "IMMUTABLE"


def test_it_keeps_the_compile_images_of_recent_versions_then_the_images_of_recent_releases():
    policy = json.loads(_repository(images_kept=4)["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])
    compile_rule, release_rule = sorted(policy["rules"], key=lambda rule: rule["rulePriority"])
    assert compile_rule["selection"] == {"tagStatus": "tagged", "tagPrefixList": ["compile-"],
                                         "countType": "imageCountMoreThan", "countNumber": 4}
    assert release_rule["selection"]["tagStatus"] == "any"
    assert release_rule["selection"]["countNumber"] == 4 * len(IMAGES_EACH_RELEASE_PUSHES)
    assert IMAGES_PER_RELEASE == len(IMAGES_EACH_RELEASE_PUSHES)


def test_tags_of_the_gateway_and_the_compile_job():
    assert gateway_tag("abc123") == "abc123-gateway"
    assert compile_tag("1a2b") == "compile-1a2b"
