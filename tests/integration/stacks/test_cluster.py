"""The cluster stack's wiring of its units from the settings. The units alone (the EKS
cluster, its node group, add-ons and kubectl layer; the load balancer controller) are
asserted in tests/unit/stacks/cluster/."""


def test_cluster_gets_the_settings_name_version_and_system_nodes(synthesized, application):
    template = synthesized.template(application.cluster)
    settings = application.settings
    template.has_resource_properties("AWS::EKS::Cluster", {
        "Name": settings.cluster.cluster_name, "Version": settings.cluster.kubernetes_version})
    template.has_resource_properties("AWS::EKS::Nodegroup", {
        "InstanceTypes": [settings.cluster.system_node_instance_type],
        "ScalingConfig": {"MinSize": settings.cluster.system_node_min_size, "DesiredSize": settings.cluster.system_node_desired_size,
                          "MaxSize": settings.cluster.system_node_max_size},
    })


def test_observability_addons_wait_for_the_system_nodes(synthesized, application):
    resources = synthesized.template(application.cluster).to_json()["Resources"]
    addons = {r["Properties"]["AddonName"]: (k, r) for k, r in resources.items() if r["Type"] == "AWS::EKS::Addon"}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent",
                           "eks-node-monitoring-agent", "amazon-cloudwatch-observability"}
    nodegroup_id = next(k for k, r in resources.items() if r["Type"] == "AWS::EKS::Nodegroup")
    # The agents' DaemonSets need nodes to become active (the EKS add-ons' order: test_eks.py).
    for name in ("eks-node-monitoring-agent", "amazon-cloudwatch-observability"):
        assert nodegroup_id in addons[name][1]["DependsOn"], name


def test_load_balancer_controller_is_installed(synthesized, application):
    synthesized.template(application.cluster).has_resource_properties("Custom::AWSCDK-EKS-HelmChart", {
        "Chart": "aws-load-balancer-controller",
        "Version": application.settings.versions.alb_controller_version.lstrip("v"),
        "Namespace": "kube-system",
    })
