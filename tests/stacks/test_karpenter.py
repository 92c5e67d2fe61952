"""Karpenter: interruption queue and rules, controller IAM, node role and access entry, Helm release."""
import json

from aws_cdk.assertions import Match

from stacks.cluster.karpenter.interruption import INTERRUPTION_EVENTS
from tests.conftest import logical_id


def _resources(synthesized, application):
    return synthesized.template(application.cluster).to_json()["Resources"]


def _logical_id(application, construct):
    return logical_id(construct)


def test_five_rules_with_exact_detail_types_feed_the_queue(synthesized, application):
    template = synthesized.template(application.cluster)
    queue_id = _logical_id(application, application.cluster.karpenter.interruption.queue)
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


def test_queue_is_encrypted_short_lived_and_tls_only(synthesized, application):
    template = synthesized.template(application.cluster)
    template.has_resource_properties("AWS::SQS::Queue", {"MessageRetentionPeriod": 300, "SqsManagedSseEnabled": True})
    template.has_resource_properties("AWS::SQS::QueuePolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
        Match.object_like({"Effect": "Allow", "Action": "sqs:SendMessage", "Principal": {"Service": Match.array_with(
            ["events.amazonaws.com"])}}),
    ])}})


def _controller_statements(resources):
    statements = []
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::ManagedPolicy" and "Karpenter" in resource["Properties"].get("Description", ""):
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return {s["Sid"]: s for s in statements}


def test_pass_role_only_for_the_node_role_and_only_to_ec2(synthesized, application):
    statements = _controller_statements(_resources(synthesized, application))
    node_role_id = _logical_id(application, application.cluster.karpenter.node_role.role)
    pass_role = statements["AllowPassingInstanceRole"]
    assert pass_role["Action"] == "iam:PassRole"
    assert pass_role["Resource"] == {"Fn::GetAtt": [node_role_id, "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    passes = [s for s in statements.values() if "iam:PassRole" in json.dumps(s["Action"])]
    assert passes == [pass_role]


def test_node_lifecycle_is_scoped_by_cluster_and_nodepool_tags(synthesized, application):
    statements = _controller_statements(_resources(synthesized, application))
    cluster = application.settings.cluster_name
    for sid in ("AllowScopedEC2InstanceActionsWithTags", "AllowScopedResourceCreationTagging", "AllowScopedDeletion",
                "AllowScopedResourceTagging", "AllowScopedEC2LaunchTemplateAccessActions"):
        condition = json.dumps(statements[sid]["Condition"])
        assert f"kubernetes.io/cluster/{cluster}" in condition and "karpenter.sh/nodepool" in condition, sid
    terminate = statements["AllowScopedDeletion"]
    assert "ec2:TerminateInstances" in terminate["Action"]
    eks = statements["AllowAPIServerEndpointDiscovery"]
    cluster_id = _logical_id(application, application.cluster.cluster)
    assert eks["Action"] == "eks:DescribeCluster" and eks["Resource"] == {"Fn::GetAtt": [cluster_id, "Arn"]}
    queue_id = _logical_id(application, application.cluster.karpenter.interruption.queue)
    assert statements["AllowInterruptionQueueActions"]["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    # No statement grants a wildcard action.
    for statement in statements.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions)


def test_controller_bound_by_pod_identity_and_node_role_has_access_entry(synthesized, application):
    resources = _resources(synthesized, application)
    karpenter = application.cluster.karpenter
    association = resources[application.cluster.get_logical_id(karpenter.pod_identity.association)]
    assert association["Properties"]["Namespace"] == "kube-system"
    assert association["Properties"]["ServiceAccount"] == "karpenter"
    role = resources[_logical_id(application, karpenter.controller_role)]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert {"pods.eks.amazonaws.com"} == {s["Principal"]["Service"] for s in trust}
    assert {a for s in trust for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == {
        "sts:AssumeRole", "sts:TagSession"}
    node_role_id = _logical_id(application, karpenter.node_role.role)
    entries = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EKS::AccessEntry"
               and r["Properties"].get("Type") == "EC2_LINUX"]
    assert [e["PrincipalArn"] for e in entries] == [{"Fn::GetAtt": [node_role_id, "Arn"]}]
    policies = json.dumps(resources[node_role_id]["Properties"]["ManagedPolicyArns"])
    for name in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryPullOnly",
                 "AmazonSSMManagedInstanceCore"):
        assert name in policies


def test_helm_release_is_pinned_and_configured(synthesized, application):
    resources = _resources(synthesized, application)
    chart = resources[_logical_id(application, application.cluster.karpenter.chart)]
    props = chart["Properties"]
    assert props["Repository"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert props["Version"] == application.settings.karpenter_version == "1.14.1"
    values = json.dumps(props["Values"])
    queue_id = _logical_id(application, application.cluster.karpenter.interruption.queue)
    assert "clusterName" in values and "interruptionQueue" in values and queue_id in values
    # The controller's pods are admitted only once its association is effective.
    effective_id = _logical_id(application, application.cluster.karpenter.pod_identity.effective)
    assert effective_id in chart["DependsOn"]
