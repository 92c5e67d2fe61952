"""What the issue fixes in each chart, read from the rendered objects of the default app,
plus the charts built directly (no CDK synth) with non-default settings."""
import email

import cdk8s
import pytest
import yaml

from k8s_charts.imports.aws.k8s.karpenter import Ec2NodeClass
from stacks.cluster.karpenter.node_class import NodeClassChart
from stacks.cluster.karpenter.node_pool import NodePoolChart
from tests.k8s import validation


def _pod(obj):
    return obj["spec"]["template"]["spec"]


# The workloads of this layer (the application's own are checked with their charts).
NEURON_WORKLOADS = {("DaemonSet", "neuron-device-plugin"), ("Deployment", "neuron-scheduler-extension"),
                    ("Deployment", "my-scheduler")}


def _workloads(objects):
    found = [o for o in objects if (o["kind"], o["metadata"]["name"]) in NEURON_WORKLOADS]
    assert len(found) == len(NEURON_WORKLOADS)
    return found


def test_device_plugin_daemon_set(find, application):
    spec = _pod(find("DaemonSet", "neuron-device-plugin"))
    (container,) = spec["containers"]
    assert container["image"] == f"public.ecr.aws/neuron/neuron-device-plugin:{application.settings.neuron_device_plugin_version}"
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in spec["tolerations"]
    assert {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    assert mounts == host_paths == {"device-plugin": "/var/lib/kubelet/device-plugins", "run": "/run",
                                    "aws-config": "/opt/aws"}
    # As the Neuron Helm chart mounts it (stacks/cluster/neuron/device_plugin.py): read-only.
    assert [m.get("readOnly") for m in container["volumeMounts"] if m["name"] == "aws-config"] == [True]


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


def test_device_plugin_rbac_is_only_what_it_uses(find):
    rules = {(tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in find("ClusterRole", "neuron-device-plugin")["rules"]}
    assert rules == {
        (("nodes",), ("get", "list", "watch")),
        (("nodes/status",), ("patch", "update")),
        (("pods",), ("get", "list", "patch", "update", "watch")),
        (("events",), ("create", "patch")),
    }
    binding = find("ClusterRoleBinding", "neuron-device-plugin")
    service_account = find("ServiceAccount", "neuron-device-plugin")
    assert binding["subjects"][0]["name"] == _pod(find("DaemonSet", "neuron-device-plugin"))["serviceAccountName"]
    assert binding["subjects"][0]["namespace"] == service_account["metadata"]["namespace"]


def test_scheduler_extension(find, application):
    spec = _pod(find("Deployment", "neuron-scheduler-extension"))
    (container,) = spec["containers"]
    assert container["image"] == f"public.ecr.aws/neuron/neuron-scheduler:{application.settings.neuron_scheduler_version}"
    assert {"name": "PORT", "value": "12345"} in container["env"]
    role = find("ClusterRole", "neuron-scheduler-extension")
    assert any(r["resources"] == ["pods/binding"] and r["verbs"] == ["create"] for r in role["rules"])


def test_my_scheduler(find):
    config = yaml.safe_load(find("ConfigMap", "my-scheduler-config")["data"]["my-scheduler-config.yaml"])
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    (extender,) = config["extenders"]
    assert extender | {"urlPrefix": None} == {
        "urlPrefix": None, "filterVerb": "filter", "bindVerb": "bind", "enableHTTPS": False,
        "nodeCacheCapable": True, "ignorable": False,
        "managedResources": [{"name": "aws.amazon.com/neuron", "ignoredByScheduler": False},
                             {"name": "aws.amazon.com/neuroncore", "ignoredByScheduler": False}],
    }
    assert config["leaderElection"]["leaderElect"] is True
    spec = _pod(find("Deployment", "my-scheduler"))
    (container,) = spec["containers"]
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": 10259, "scheme": "HTTPS"}
    (mount,) = container["volumeMounts"]
    assert f"--config={mount['mountPath']}/my-scheduler-config.yaml" in container["args"]
    (volume,) = spec["volumes"]
    assert volume["configMap"]["name"] == "my-scheduler-config"
    bound = {b["roleRef"]["name"] for b in (find("ClusterRoleBinding", f"my-scheduler-as-{n}")
                                            for n in ("kube-scheduler", "volume-scheduler"))}
    assert bound == {"system:kube-scheduler", "system:volume-scheduler"}


def test_node_class(find, application):
    settings = application.settings
    spec = find("EC2NodeClass", "inf2")["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": settings.node_ami_alias}]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert spec["blockDeviceMappings"] == [{"deviceName": "/dev/xvda", "ebs": {
        "deleteOnTermination": True, "encrypted": True,
        "volumeSize": f"{settings.node_root_volume_gib}Gi", "volumeType": "gp3",
        "throughput": settings.node_root_volume_throughput_mibps, "iops": settings.node_root_volume_iops}}]
    assert settings.node_root_volume_gib >= 200
    # SOCI parallel pull: nodeadm's feature gate in a NodeConfig part of the MIME user data.
    parts = [p for p in email.message_from_string(spec["userData"]).walk() if not p.is_multipart()]
    (node_config,) = [p for p in parts if p.get_content_type() == "application/node.eks.aws"]
    document = yaml.safe_load(node_config.get_payload())
    assert document["kind"] == "NodeConfig" and document["spec"]["featureGates"] == {"FastImagePull": True}
    assert settings.fast_image_pull is True


def test_fast_image_pull_is_a_setting_and_al2023_only():
    def user_data(alias: str, fast: bool):
        app = cdk8s.App()
        chart = NodeClassChart(app, "nc", role_name="r", discovery_tag=("k", "v"), ami_alias=alias, volume_gib=200,
                               fast_image_pull=fast)
        return chart.to_json()[0]["spec"].get("userData")

    assert user_data("al2023@v20260903", False) is None
    assert "FastImagePull: true" in user_data("al2023@v20260903", True)
    assert user_data("bottlerocket@v1.40.0", True) is None


def test_node_pool(find, application):
    settings = application.settings
    spec = find("NodePool", "inf2")["spec"]
    template = spec["template"]["spec"]
    requirements = {r["key"]: (r["operator"], r["values"]) for r in template["requirements"]}
    assert requirements["karpenter.k8s.aws/instance-family"] == ("In", ["inf2"])
    assert requirements["kubernetes.io/arch"] == ("In", ["amd64"])
    assert requirements["karpenter.sh/capacity-type"] == ("In", list(settings.node_capacity_types))
    assert template["taints"] == [{"key": "aws.amazon.com/neuron", "effect": "NoSchedule"}]
    assert template["expireAfter"] == settings.node_expire_after
    assert template["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "inf2"}
    assert spec["limits"] == {"cpu": str(settings.node_pool_cpu_limit),
                              "memory": f"{settings.node_pool_memory_gib_limit}Gi",
                              "aws.amazon.com/neuron": str(settings.node_pool_neuron_limit)}
    assert spec["disruption"] == {"consolidationPolicy": "WhenEmptyOrUnderutilized",
                                  "consolidateAfter": settings.node_consolidate_after,
                                  "budgets": [{"nodes": settings.node_disruption_budget},
                                              # a new AMI rolls one node at a time
                                              {"nodes": "1", "reasons": ["Drifted"]}]}


@pytest.mark.parametrize("alias, device", [("al2023@v20250101", "/dev/xvda"), ("bottlerocket@latest", "/dev/xvdb")])
def test_charts_with_other_settings_still_validate(alias, device):
    app = cdk8s.App()
    node_class = NodeClassChart(app, "nc", role_name="role", discovery_tag=("k", "v"), ami_alias=alias, volume_gib=500)
    node_pool = NodePoolChart(app, "np", node_class=node_class.node_class, capacity_types=("spot", "on-demand"),
                              cpu_limit=8, memory_gib_limit=32, neuron_limit=1, consolidate_after="Never",
                              disruption_budget="1", expire_after="Never")
    assert isinstance(node_class.node_class, Ec2NodeClass)
    rendered = node_class.to_json() + node_pool.to_json()
    assert validation.validate_all(rendered, "1.35") == []
    assert rendered[0]["spec"]["blockDeviceMappings"][0]["deviceName"] == device
    assert rendered[1]["spec"]["template"]["spec"]["requirements"][-1]["values"] == ["spot", "on-demand"]
