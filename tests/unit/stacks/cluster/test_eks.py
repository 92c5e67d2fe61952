"""The EKS cluster alone: native, encrypted, logged, private unless told otherwise; its
system node group, managed add-ons and kubectl layer from its props; the security groups
Karpenter's nodes and operators use."""
import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Match, Template

from stacks.cluster.eks.cluster import EksCluster

DISCOVERY = ("karpenter.sh/discovery", "example-cluster")
PROPS = dict(
    cluster_name="example-cluster", kubernetes_version="1.35", endpoint_access="private", public_access_cidrs=(),
    admin_principal_arn=None, addon_versions={"vpc-cni": "v1.20.0-eksbuild.1"}, discovery_tag=DISCOVERY,
    system_node_instance_type="m7i.large", system_node_min_size=2, system_node_desired_size=2,
    system_node_max_size=4, system_node_disk_gib=30,
)


def _build(**changes) -> tuple[cdk.Stack, EksCluster]:
    stack = cdk.Stack(cdk.App(), "Test")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
    return stack, EksCluster(stack, "Eks", vpc=vpc, **{**PROPS, **changes})


@pytest.fixture(scope="module")
def default() -> tuple[cdk.Stack, EksCluster, Template]:
    stack, eks = _build()
    return stack, eks, Template.from_stack(stack)


def test_cluster_is_native_encrypted_logged_and_private(default):
    _, _, template = default
    template.resource_count_is("AWS::EKS::Cluster", 1)
    template.has_resource_properties("AWS::EKS::Cluster", {
        "Name": "example-cluster",
        "Version": "1.35",
        "ComputeConfig": {"Enabled": False},
        "AccessConfig": {"AuthenticationMode": "API", "BootstrapClusterCreatorAdminPermissions": False},
        "EncryptionConfig": [{"Provider": {"KeyArn": Match.any_value()}, "Resources": ["secrets"]}],
        "Logging": {"ClusterLogging": {"EnabledTypes": [{"Type": t} for t in (
            "api", "audit", "authenticator", "controllerManager", "scheduler")]}},
        "ResourcesVpcConfig": Match.object_like({"EndpointPrivateAccess": True, "EndpointPublicAccess": False}),
    })
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_a_public_endpoint_is_open_only_to_the_given_networks():
    stack, _ = _build(endpoint_access="public", public_access_cidrs=("198.51.100.0/24",))
    Template.from_stack(stack).has_resource_properties("AWS::EKS::Cluster", {
        "ResourcesVpcConfig": Match.object_like({"EndpointPrivateAccess": True, "EndpointPublicAccess": True,
                                                 "PublicAccessCidrs": ["198.51.100.0/24"]}),
    })


def test_system_node_group_is_small_and_on_demand(default):
    _, _, template = default
    template.has_resource_properties("AWS::EKS::Nodegroup", {
        "CapacityType": "ON_DEMAND",
        "InstanceTypes": ["m7i.large"],
        "ScalingConfig": {"MinSize": 2, "DesiredSize": 2, "MaxSize": 4},
        "DiskSize": 30,
        "AmiType": "AL2023_x86_64_STANDARD",
        "Labels": {"sd21.aws/node-role": "system"},
    })


def test_managed_addons_in_dependency_order_with_pinned_versions(default):
    _, _, template = default
    resources = template.to_json()["Resources"]
    addons = {r["Properties"]["AddonName"]: (k, r) for k, r in resources.items() if r["Type"] == "AWS::EKS::Addon"}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent"}
    nodegroup_id = next(k for k, r in resources.items() if r["Type"] == "AWS::EKS::Nodegroup")
    # Nodes only become Ready once the CNI runs; CoreDNS only once nodes exist.
    for name in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
        assert addons[name][0] in resources[nodegroup_id]["DependsOn"]
    assert nodegroup_id in addons["coredns"][1]["DependsOn"]
    # A version where one is given, EKS's default for the cluster version otherwise.
    assert addons["vpc-cni"][1]["Properties"]["AddonVersion"] == "v1.20.0-eksbuild.1"
    assert "AddonVersion" not in addons["coredns"][1]["Properties"]


@pytest.mark.parametrize("version", ["1.34", "1.36"])
def test_kubectl_provider_uses_the_matching_layer_in_the_vpc(version):
    stack, eks = _build(kubernetes_version=version)
    template = Template.from_stack(stack)
    layer = eks.node.find_child("KubectlLayer")
    assert type(layer).__name__ == f"KubectlV{version.split('.')[1]}Layer"
    resource = layer.node.find_child("Resource")
    layer_id = stack.get_logical_id(resource.node.default_child or resource)
    assert layer_id in template.find_resources("AWS::Lambda::LayerVersion")
    handler = [r for r in template.find_resources("AWS::Lambda::Function").values()
               if r["Properties"].get("VpcConfig")]
    assert handler, "a private endpoint is only reachable from a kubectl handler inside the VPC"


def test_karpenter_nodes_get_a_group_found_by_the_discovery_tag(default):
    stack, eks, template = default
    group = template.to_json()["Resources"][stack.get_logical_id(eks.node_security_group.node.default_child)]
    tags = group["Properties"]["Tags"]
    assert {"Key": DISCOVERY[0], "Value": DISCOVERY[1]} in tags
    assert {"Key": "kubernetes.io/cluster/example-cluster", "Value": "owned"} in tags
    # Rules as separate resources: the load balancer controller's own rules survive an update.
    assert "SecurityGroupIngress" not in group["Properties"]
    group_id = {"Fn::GetAtt": [stack.get_logical_id(eks.node_security_group.node.default_child), "GroupId"]}
    sources = [r["Properties"] for r in template.find_resources("AWS::EC2::SecurityGroupIngress").values()]
    assert any(s["GroupId"] == group_id and s.get("SourceSecurityGroupId") == group_id for s in sources)


def _principals(template: Template) -> list:
    """The access entries' principals other than the kubectl provider's own role."""
    return [e["Properties"]["PrincipalArn"] for e in template.find_resources("AWS::EKS::AccessEntry").values()
            if "KubectlProvider" not in json.dumps(e["Properties"]["PrincipalArn"])]


def test_admin_access_entry_only_for_a_given_principal(default):
    _, _, template = default
    assert _principals(template) == []
    stack, _ = _build(admin_principal_arn="arn:aws:iam::111111111111:role/Admin")
    template = Template.from_stack(stack)
    assert _principals(template) == ["arn:aws:iam::111111111111:role/Admin"]
    (entry,) = [e["Properties"] for e in template.find_resources("AWS::EKS::AccessEntry").values()
                if e["Properties"]["PrincipalArn"] == "arn:aws:iam::111111111111:role/Admin"]
    (policy,) = entry["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "cluster"}
    assert "policy/AmazonEKSClusterAdminPolicy" in json.dumps(policy["PolicyArn"])


def test_operators_get_a_group_and_the_kubeconfig_command(default):
    stack, eks, template = default
    group_id = {"Fn::GetAtt": [stack.get_logical_id(eks.operator_security_group.node.default_child), "GroupId"]}
    template.has_resource_properties("AWS::EC2::SecurityGroupIngress", {
        "SourceSecurityGroupId": group_id, "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443})
    command = template.find_outputs("KubeconfigCommand")["KubeconfigCommand"]["Value"]
    assert "aws eks update-kubeconfig --name example-cluster" in json.dumps(command)
