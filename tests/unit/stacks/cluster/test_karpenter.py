"""Karpenter alone: the interruption queue and its rules, the controller's IAM and Pod
Identity, the node role and its access entry, the Helm releases from their props; the
inf2 EC2NodeClass and NodePool charts from theirs, and how the node pool unit attaches them."""
import email
import json

import aws_cdk as cdk
import cdk8s
import pytest
import yaml
from aws_cdk.assertions import Match, Template

from k8s_charts.imports.aws.k8s.karpenter import Ec2NodeClass
from stacks.cluster.karpenter.controller import Karpenter
from stacks.cluster.karpenter.inf2_node_pool import Inf2NodePool
from stacks.cluster.karpenter.interruption import INTERRUPTION_EVENTS, InterruptionQueue
from stacks.cluster.karpenter.node_class import NodeClassChart
from stacks.cluster.karpenter.node_pool import NodePoolChart
from tests.support import validation
from tests.unit.stacks.cluster.helm import helm_values

CLUSTER_NAME = "example-cluster"  # the attached fixture's
DISCOVERY = ("karpenter.sh/discovery", CLUSTER_NAME)


# --- the interruption queue ------------------------------------------------------------

def _queue() -> tuple[cdk.Stack, InterruptionQueue]:
    stack = cdk.Stack(cdk.App(), "Test")
    return stack, InterruptionQueue(stack, "Interruption")


def test_five_rules_with_exact_detail_types_feed_the_queue():
    stack, interruption = _queue()
    template = Template.from_stack(stack)
    queue_id = stack.get_logical_id(interruption.queue.node.default_child)
    rules = template.find_resources("AWS::Events::Rule")
    patterns = sorted((r["Properties"]["EventPattern"]["source"][0], r["Properties"]["EventPattern"]["detail-type"][0])
                      for r in rules.values())
    assert patterns == sorted([
        ("aws.health", "AWS Health Event"),
        ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
        ("aws.ec2", "EC2 Instance State-change Notification"),
        ("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
    ])
    assert len(INTERRUPTION_EVENTS) == 5
    for rule in rules.values():
        assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}


def test_queue_is_encrypted_short_lived_and_tls_only():
    stack, _ = _queue()
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::SQS::Queue", {"MessageRetentionPeriod": 300, "SqsManagedSseEnabled": True})
    template.has_resource_properties("AWS::SQS::QueuePolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
        Match.object_like({"Effect": "Allow", "Action": "sqs:SendMessage", "Principal": {"Service": Match.array_with(
            ["events.amazonaws.com"])}}),
    ])}})


# --- the controller ----------------------------------------------------------------------

def _karpenter(attached, **props) -> Karpenter:
    props = {"cluster_name": CLUSTER_NAME, "version": "1.14.1", "node_repair": True, "system_node_min_size": 2,
             **props}
    return Karpenter(attached.stack, "Karpenter", cluster=attached.cluster, system_nodes=attached.system_nodes,
                     dns=attached.dns, **props)


def _controller_statements(resources: dict) -> dict:
    statements = []
    for resource in resources.values():
        properties = resource["Properties"]
        if resource["Type"] == "AWS::IAM::ManagedPolicy" and "Karpenter" in properties.get("Description", ""):
            statements += properties["PolicyDocument"]["Statement"]
    return {s["Sid"]: s for s in statements}


def test_pass_role_only_for_the_node_role_and_only_to_ec2(attached):
    karpenter = _karpenter(attached)
    statements = _controller_statements(attached.resources())
    pass_role = statements["AllowPassingInstanceRole"]
    assert pass_role["Action"] == "iam:PassRole"
    assert pass_role["Resource"] == {"Fn::GetAtt": [attached.logical_id(karpenter.node_role.role), "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    passes = [s for s in statements.values() if "iam:PassRole" in json.dumps(s["Action"])]
    assert passes == [pass_role]


def test_node_lifecycle_is_scoped_by_cluster_and_nodepool_tags(attached):
    karpenter = _karpenter(attached)
    statements = _controller_statements(attached.resources())
    for sid in ("AllowScopedEC2InstanceActionsWithTags", "AllowScopedResourceCreationTagging", "AllowScopedDeletion",
                "AllowScopedResourceTagging", "AllowScopedEC2LaunchTemplateAccessActions"):
        condition = json.dumps(statements[sid]["Condition"])
        assert f"kubernetes.io/cluster/{CLUSTER_NAME}" in condition and "karpenter.sh/nodepool" in condition, sid
    terminate = statements["AllowScopedDeletion"]
    assert "ec2:TerminateInstances" in terminate["Action"]
    eks = statements["AllowAPIServerEndpointDiscovery"]
    assert eks["Action"] == "eks:DescribeCluster"
    assert eks["Resource"] == attached.stack.resolve(attached.cluster.cluster_arn)
    queue_id = attached.logical_id(karpenter.interruption.queue)
    assert statements["AllowInterruptionQueueActions"]["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    # No statement grants a wildcard action.
    for statement in statements.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions)


def test_controller_bound_by_pod_identity_and_node_role_has_access_entry(attached):
    karpenter = _karpenter(attached)
    resources = attached.resources()
    association = resources[attached.logical_id(karpenter.pod_identity.association)]
    assert association["Properties"]["Namespace"] == "kube-system"
    assert association["Properties"]["ServiceAccount"] == "karpenter"
    role = resources[attached.logical_id(karpenter.controller_role)]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert {"pods.eks.amazonaws.com"} == {s["Principal"]["Service"] for s in trust}
    assert {a for s in trust for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == {
        "sts:AssumeRole", "sts:TagSession"}
    node_role_id = attached.logical_id(karpenter.node_role.role)
    entries = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EKS::AccessEntry"
               and r["Properties"].get("Type") == "EC2_LINUX"]
    assert [e["PrincipalArn"] for e in entries] == [{"Fn::GetAtt": [node_role_id, "Arn"]}]
    policies = json.dumps(resources[node_role_id]["Properties"]["ManagedPolicyArns"])
    for name in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryPullOnly",
                 "AmazonSSMManagedInstanceCore"):
        assert name in policies


def test_helm_release_is_pinned_and_configured(attached):
    karpenter = _karpenter(attached, version="1.14.1")
    resources = attached.resources()
    chart = resources[attached.logical_id(karpenter.chart)]
    props = chart["Properties"]
    assert props["Repository"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert props["Version"] == "1.14.1"
    assert resources[attached.logical_id(karpenter.crd_chart)]["Properties"]["Version"] == "1.14.1"
    values = json.dumps(props["Values"])
    queue_id = attached.logical_id(karpenter.interruption.queue)
    assert "clusterName" in values and "interruptionQueue" in values and queue_id in values
    # The controller's pods are admitted only once its association is effective.
    assert attached.logical_id(karpenter.pod_identity.effective) in chart["DependsOn"]
    # Uninstalling the CRD chart would delete every NodePool, EC2NodeClass and NodeClaim.
    assert resources[attached.logical_id(karpenter.crd_chart)]["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("system_nodes, node_repair, replicas", [(1, False, 1), (3, True, 2)])
def test_replicas_follow_the_system_nodes_and_node_repair_is_a_prop(attached, system_nodes, node_repair, replicas):
    karpenter = _karpenter(attached, system_node_min_size=system_nodes, node_repair=node_repair)
    values = helm_values(attached.resource(karpenter.chart))
    assert values["replicas"] == replicas
    assert values["settings"]["featureGates"] == {"nodeRepair": node_repair}


# --- the inf2 node pool unit -------------------------------------------------------------

NODE_CLASS = dict(discovery_tag=DISCOVERY, ami_alias="al2023@v20250101", volume_gib=300, fast_image_pull=True,
                  volume_throughput_mibps=500, volume_iops=6000)
NODE_POOL = dict(capacity_types=("on-demand",), cpu_limit=64, memory_gib_limit=256, neuron_limit=4,
                 consolidate_after="10m", disruption_budget="20%", expire_after="720h")


def test_node_class_and_pool_wait_for_karpenter_and_are_kept_when_removed(attached):
    karpenter = _karpenter(attached)
    pool = Inf2NodePool(attached.stack, "Inf2", cluster=attached.cluster, karpenter=karpenter,
                        **NODE_CLASS, **NODE_POOL)
    resources = attached.resources()
    node_class = resources[attached.logical_id(pool.node_class)]
    node_pool = resources[attached.logical_id(pool.node_pool)]
    # Deleting either terminates every node of the pool.
    assert node_class["DeletionPolicy"] == node_pool["DeletionPolicy"] == "Retain"
    assert {attached.logical_id(karpenter.chart), attached.logical_id(karpenter.node_role.access_entry)} <= set(
        node_class["DependsOn"])
    assert {attached.logical_id(karpenter.chart), attached.logical_id(pool.node_class)} <= set(node_pool["DependsOn"])
    # The node class names the node role (its token), from which Karpenter makes the instance profile.
    assert {"Ref": attached.logical_id(karpenter.node_role.role)} in node_class["Properties"]["Manifest"]["Fn::Join"][1]


# --- the charts ---------------------------------------------------------------------------

def _node_class(**changes) -> dict:
    chart = NodeClassChart(cdk8s.Testing.app(), "nc", role_name="example-node-role", **{**NODE_CLASS, **changes})
    return chart.to_json()[0]


def _node_pool(**changes) -> dict:
    app = cdk8s.Testing.app()
    node_class = NodeClassChart(app, "nc", role_name="r", **NODE_CLASS)
    return NodePoolChart(app, "np", node_class=node_class.node_class, **{**NODE_POOL, **changes}).to_json()[0]


def test_node_class():
    spec = _node_class()["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": "al2023@v20250101"}]
    assert spec["role"] == "example-node-role"
    assert spec["subnetSelectorTerms"] == spec["securityGroupSelectorTerms"] == [{"tags": {DISCOVERY[0]: DISCOVERY[1]}}]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert spec["blockDeviceMappings"] == [{"deviceName": "/dev/xvda", "ebs": {
        "deleteOnTermination": True, "encrypted": True, "volumeSize": "300Gi", "volumeType": "gp3",
        "throughput": 500, "iops": 6000}}]
    # SOCI parallel pull: nodeadm's feature gate in a NodeConfig part of the MIME user data.
    parts = [p for p in email.message_from_string(spec["userData"]).walk() if not p.is_multipart()]
    (node_config,) = [p for p in parts if p.get_content_type() == "application/node.eks.aws"]
    document = yaml.safe_load(node_config.get_payload())
    assert document["kind"] == "NodeConfig" and document["spec"]["featureGates"] == {"FastImagePull": True}


def test_fast_image_pull_is_a_prop_and_al2023_only():
    def user_data(alias: str, fast: bool):
        return _node_class(ami_alias=alias, fast_image_pull=fast)["spec"].get("userData")

    assert user_data("al2023@v20260903", False) is None
    assert "FastImagePull: true" in user_data("al2023@v20260903", True)
    assert user_data("bottlerocket@v1.40.0", True) is None


def test_node_pool():
    spec = _node_pool()["spec"]
    template = spec["template"]["spec"]
    requirements = {r["key"]: (r["operator"], r["values"]) for r in template["requirements"]}
    assert requirements["karpenter.k8s.aws/instance-family"] == ("In", ["inf2"])
    assert requirements["kubernetes.io/arch"] == ("In", ["amd64"])
    assert requirements["karpenter.sh/capacity-type"] == ("In", ["on-demand"])
    assert template["taints"] == [{"key": "aws.amazon.com/neuron", "effect": "NoSchedule"}]
    assert template["expireAfter"] == "720h"
    assert template["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "inf2"}
    assert spec["limits"] == {"cpu": "64", "memory": "256Gi", "aws.amazon.com/neuron": "4"}
    assert spec["disruption"] == {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "10m",
                                  "budgets": [{"nodes": "20%"},
                                              # a new AMI rolls one node at a time
                                              {"nodes": "1", "reasons": ["Drifted"]}]}


@pytest.mark.parametrize("alias, device", [("al2023@v20250101", "/dev/xvda"), ("bottlerocket@latest", "/dev/xvdb")])
def test_charts_with_other_props_still_validate(alias, device):
    app = cdk8s.Testing.app()
    node_class = NodeClassChart(app, "nc", role_name="role", discovery_tag=("k", "v"), ami_alias=alias, volume_gib=500)
    node_pool = NodePoolChart(app, "np", node_class=node_class.node_class, capacity_types=("spot", "on-demand"),
                              cpu_limit=8, memory_gib_limit=32, neuron_limit=1, consolidate_after="Never",
                              disruption_budget="1", expire_after="Never")
    assert isinstance(node_class.node_class, Ec2NodeClass)
    rendered = node_class.to_json() + node_pool.to_json()
    assert validation.validate_all(rendered, "1.35") == []
    assert rendered[0]["spec"]["blockDeviceMappings"][0]["deviceName"] == device
    assert rendered[1]["spec"]["template"]["spec"]["requirements"][-1]["values"] == ["spot", "on-demand"]
