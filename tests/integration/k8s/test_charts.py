"""The cluster's charts as the default app renders them: invariants over every Neuron
workload, and each chart carrying the settings' values. Each chart alone, from its props,
is asserted in tests/unit/stacks/cluster/ (test_karpenter.py, test_neuron.py)."""


def _pod(obj):
    return obj["spec"]["template"]["spec"]


# The workloads of this layer (the application's own are checked with their charts).
NEURON_WORKLOADS = {("DaemonSet", "neuron-device-plugin"), ("Deployment", "neuron-scheduler-extension"),
                    ("Deployment", "my-scheduler")}


def _workloads(objects):
    found = [o for o in objects if (o["kind"], o["metadata"]["name"]) in NEURON_WORKLOADS]
    assert len(found) == len(NEURON_WORKLOADS)
    return found


def test_neuron_images_are_the_settings_versions(find, application):
    settings = application.settings
    (plugin,) = _pod(find("DaemonSet", "neuron-device-plugin"))["containers"]
    assert plugin["image"] == f"public.ecr.aws/neuron/neuron-device-plugin:{settings.versions.neuron_device_plugin_version}"
    (extension,) = _pod(find("Deployment", "neuron-scheduler-extension"))["containers"]
    assert extension["image"] == f"public.ecr.aws/neuron/neuron-scheduler:{settings.versions.neuron_scheduler_version}"


def test_no_pod_can_escalate_privileges_and_images_are_pinned(objects):
    for workload in _workloads(objects):
        for container in _pod(workload)["containers"]:
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, workload["metadata"]["name"]
            assert context.get("privileged") is False and context.get("capabilities") == {"drop": ["ALL"]}
            image, _, tag = container["image"].rpartition(":")
            assert image and tag and tag != "latest" and "/" not in tag, container["image"]


def test_rbac_is_explicit_and_never_reaches_the_kubelet_api(objects):
    for role in (o for o in objects if o["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], role["metadata"]["name"]
            assert "nodes/proxy" not in rule["resources"], role["metadata"]["name"]
            assert not {"secrets", "escalate", "bind", "impersonate"} & (set(rule["resources"]) | set(rule["verbs"]))


def test_node_class(find, application):
    settings = application.settings
    spec = find("EC2NodeClass", "inf2")["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": settings.node_pool.node_ami_alias}]
    assert spec["blockDeviceMappings"] == [{"deviceName": "/dev/xvda", "ebs": {
        "deleteOnTermination": True, "encrypted": True,
        "volumeSize": f"{settings.node_pool.node_root_volume_gib}Gi", "volumeType": "gp3",
        "throughput": settings.node_pool.node_root_volume_throughput_mibps, "iops": settings.node_pool.node_root_volume_iops}}]
    assert settings.node_pool.node_root_volume_gib >= 200
    # SOCI parallel pull is on by default (its user data: tests/unit/stacks/cluster/test_karpenter.py).
    assert settings.node_pool.fast_image_pull is True and "FastImagePull: true" in spec["userData"]


def test_node_pool(find, application):
    settings = application.settings
    spec = find("NodePool", "inf2")["spec"]
    template = spec["template"]["spec"]
    requirements = {r["key"]: (r["operator"], r["values"]) for r in template["requirements"]}
    assert requirements["karpenter.sh/capacity-type"] == ("In", list(settings.node_pool.node_capacity_types))
    assert template["expireAfter"] == settings.node_pool.node_expire_after
    assert spec["limits"] == {"cpu": str(settings.node_pool.node_pool_cpu_limit),
                              "memory": f"{settings.node_pool.node_pool_memory_gib_limit}Gi",
                              "aws.amazon.com/neuron": str(settings.node_pool.node_pool_neuron_limit)}
    assert spec["disruption"]["consolidateAfter"] == settings.node_pool.node_consolidate_after
    assert spec["disruption"]["budgets"][0] == {"nodes": settings.node_pool.node_disruption_budget}
