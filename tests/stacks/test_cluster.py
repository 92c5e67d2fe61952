"""EKS: native cluster, system node group, add-ons, logging, encryption, access entries, LB controller."""
from aws_cdk.assertions import Match


def test_cluster_is_native_encrypted_logged_and_private(synthesized, application):
    template = synthesized.template(application.cluster)
    settings = application.settings
    template.resource_count_is("AWS::EKS::Cluster", 1)
    template.has_resource_properties("AWS::EKS::Cluster", {
        "Name": settings.cluster_name,
        "Version": settings.kubernetes_version,
        "ComputeConfig": {"Enabled": False},
        "AccessConfig": {"AuthenticationMode": "API", "BootstrapClusterCreatorAdminPermissions": False},
        "EncryptionConfig": [{"Provider": {"KeyArn": Match.any_value()}, "Resources": ["secrets"]}],
        "Logging": {"ClusterLogging": {"EnabledTypes": [{"Type": t} for t in (
            "api", "audit", "authenticator", "controllerManager", "scheduler")]}},
        "ResourcesVpcConfig": Match.object_like({"EndpointPrivateAccess": True, "EndpointPublicAccess": False}),
    })
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_system_node_group_is_small_and_on_demand(synthesized, application):
    settings = application.settings
    synthesized.template(application.cluster).has_resource_properties("AWS::EKS::Nodegroup", {
        "CapacityType": "ON_DEMAND",
        "InstanceTypes": [settings.system_node_instance_type],
        "ScalingConfig": {"MinSize": settings.system_node_min_size, "DesiredSize": settings.system_node_desired_size,
                          "MaxSize": settings.system_node_max_size},
        "AmiType": "AL2023_x86_64_STANDARD",
    })


def test_managed_addons_in_dependency_order(synthesized, application):
    resources = synthesized.template(application.cluster).to_json()["Resources"]
    addons = {r["Properties"]["AddonName"]: (k, r) for k, r in resources.items() if r["Type"] == "AWS::EKS::Addon"}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent",
                           "eks-node-monitoring-agent", "amazon-cloudwatch-observability"}
    nodegroup_id = next(k for k, r in resources.items() if r["Type"] == "AWS::EKS::Nodegroup")
    for name in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
        assert addons[name][0] in resources[nodegroup_id]["DependsOn"]
    # DaemonSets and the agent need nodes to become active.
    for name in ("coredns", "eks-node-monitoring-agent", "amazon-cloudwatch-observability"):
        assert nodegroup_id in addons[name][1]["DependsOn"], name


def test_kubectl_provider_uses_the_matching_layer_in_the_vpc(synthesized, application):
    template = synthesized.template(application.cluster)
    minor = application.settings.kubernetes_version.split(".")[1]
    layer = application.cluster.eks.node.find_child("KubectlLayer")
    assert type(layer).__name__ == f"KubectlV{minor}Layer"
    layer_id = application.cluster.get_logical_id(layer.node.find_child("Resource").node.default_child
                                                  if layer.node.find_child("Resource").node.default_child
                                                  else layer.node.find_child("Resource"))
    assert layer_id in template.find_resources("AWS::Lambda::LayerVersion")
    handler = [r for r in template.find_resources("AWS::Lambda::Function").values()
               if r["Properties"].get("VpcConfig")]
    assert handler, "a private endpoint is only reachable from a kubectl handler inside the VPC"


def test_load_balancer_controller_is_installed(synthesized, application):
    synthesized.template(application.cluster).has_resource_properties("Custom::AWSCDK-EKS-HelmChart", {
        "Chart": "aws-load-balancer-controller",
        "Version": application.settings.alb_controller_version.lstrip("v"),
        "Namespace": "kube-system",
    })
