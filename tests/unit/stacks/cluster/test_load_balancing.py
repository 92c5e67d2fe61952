"""The AWS Load Balancer Controller alone: its chart version, image and replicas from its
props, its upstream IAM policy, and Pod Identity before the release."""
import json

import pytest

from stacks.cluster.load_balancing.controller import LoadBalancerController
from stacks.cluster.load_balancing.versions import CHART_VERSIONS
from tests.unit.stacks.cluster.helm import helm_values


def _controller(attached, **props) -> LoadBalancerController:
    props = {"version": "v3.2.2", "system_node_min_size": 2, **props}
    return LoadBalancerController(attached.stack, "LoadBalancerController", cluster=attached.cluster,
                                  system_nodes=attached.system_nodes, **props)


def test_the_chart_version_and_image_follow_the_controller_version(attached):
    controller = _controller(attached, version="v3.2.2")
    props = attached.resource(controller.chart)["Properties"]
    assert props["Chart"] == "aws-load-balancer-controller"
    assert props["Version"] == CHART_VERSIONS["v3.2.2"] == "3.2.2"
    assert props["Namespace"] == "kube-system"
    values = helm_values(attached.resource(controller.chart))
    assert values["image"] == {"repository": "public.ecr.aws/eks/aws-load-balancer-controller", "tag": "v3.2.2"}
    # No Service mutator webhook: it rejects other charts' Services while the controller starts.
    assert values["enableServiceMutatorWebhook"] is False


@pytest.mark.parametrize("system_nodes, replicas", [(1, 1), (3, 2)])
def test_replicas_fit_the_system_nodes(attached, system_nodes, replicas):
    controller = _controller(attached, system_node_min_size=system_nodes)
    assert helm_values(attached.resource(controller.chart))["replicaCount"] == replicas


def test_the_upstream_policy_is_attached_and_pod_identity_comes_first(attached):
    controller = _controller(attached)
    resources = attached.resources()
    policy = resources[attached.logical_id(controller.policy)]["Properties"]
    assert policy["Roles"] == [{"Ref": attached.logical_id(controller.role)}]
    actions = json.dumps(policy["PolicyDocument"]["Statement"])
    assert "elasticloadbalancing:CreateLoadBalancer" in actions and "arn:aws:" not in actions
    association = resources[attached.logical_id(controller.pod_identity.association)]["Properties"]
    assert (association["Namespace"], association["ServiceAccount"]) == ("kube-system", "aws-load-balancer-controller")
    depends_on = resources[attached.logical_id(controller.chart)]["DependsOn"]
    assert attached.logical_id(controller.pod_identity.effective) in depends_on
