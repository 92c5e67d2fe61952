"""The Neuron charts alone (device plugin, scheduler extension, my-scheduler), each from
its props, and how the Neuron unit attaches them to a cluster."""
import cdk8s
import pytest
import yaml

from stacks.cluster.neuron.device_plugin import NeuronDevicePluginChart
from stacks.cluster.neuron.my_scheduler import MySchedulerChart
from stacks.cluster.neuron.neuron_charts import NeuronCharts
from stacks.cluster.neuron.scheduler_extension import NeuronSchedulerExtensionChart

SYSTEM_NODES = ("example.com/role", "system")
SCHEDULER_IMAGE = "registry.k8s.io/kube-scheduler:v1.35.0"


def _one(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _pod(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def _device_plugin(version: str = "2.28.27.0") -> list[dict]:
    return NeuronDevicePluginChart(cdk8s.Testing.app(), "dp", version=version).to_json()


def _scheduler_charts(replicas: int = 2) -> tuple[list[dict], list[dict]]:
    app = cdk8s.Testing.app()
    extension = NeuronSchedulerExtensionChart(app, "ext", version="2.28.27.0", system_node_label=SYSTEM_NODES)
    scheduler = MySchedulerChart(app, "sched", image=SCHEDULER_IMAGE, extension_service=extension.service,
                                 system_node_label=SYSTEM_NODES, replicas=replicas)
    return extension.to_json(), scheduler.to_json()


def test_device_plugin_daemon_set():
    objects = _device_plugin(version="2.99.0.0")
    spec = _pod(_one(objects, "DaemonSet", "neuron-device-plugin"))
    (container,) = spec["containers"]
    assert container["image"] == "public.ecr.aws/neuron/neuron-device-plugin:2.99.0.0"
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in spec["tolerations"]
    assert {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    assert mounts == host_paths == {"device-plugin": "/var/lib/kubelet/device-plugins", "run": "/run",
                                    "aws-config": "/opt/aws"}
    # As the Neuron Helm chart mounts it (stacks/cluster/neuron/device_plugin.py): read-only.
    assert [m.get("readOnly") for m in container["volumeMounts"] if m["name"] == "aws-config"] == [True]


def test_device_plugin_rbac_is_only_what_it_uses():
    objects = _device_plugin()
    rules = {(tuple(r["resources"]), tuple(sorted(r["verbs"])))
             for r in _one(objects, "ClusterRole", "neuron-device-plugin")["rules"]}
    assert rules == {
        (("nodes",), ("get", "list", "watch")),
        (("nodes/status",), ("patch", "update")),
        (("pods",), ("get", "list", "patch", "update", "watch")),
        (("events",), ("create", "patch")),
    }
    binding = _one(objects, "ClusterRoleBinding", "neuron-device-plugin")
    service_account = _one(objects, "ServiceAccount", "neuron-device-plugin")
    assert binding["subjects"][0]["name"] == _pod(_one(objects, "DaemonSet", "neuron-device-plugin"))[
        "serviceAccountName"]
    assert binding["subjects"][0]["namespace"] == service_account["metadata"]["namespace"]


def test_scheduler_extension():
    objects, _ = _scheduler_charts()
    spec = _pod(_one(objects, "Deployment", "neuron-scheduler-extension"))
    (container,) = spec["containers"]
    assert container["image"] == "public.ecr.aws/neuron/neuron-scheduler:2.28.27.0"
    assert {"name": "PORT", "value": "12345"} in container["env"]
    role = _one(objects, "ClusterRole", "neuron-scheduler-extension")
    assert any(r["resources"] == ["pods/binding"] and r["verbs"] == ["create"] for r in role["rules"])


@pytest.mark.parametrize("chart, name", [(0, "neuron-scheduler-extension"), (1, "my-scheduler")])
def test_schedulers_run_on_the_system_nodes(chart, name):
    spec = _pod(_one(_scheduler_charts()[chart], "Deployment", name))
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": SYSTEM_NODES[0], "operator": "In", "values": [SYSTEM_NODES[1]]} in [
        e for term in terms for e in term["matchExpressions"]]
    assert spec["priorityClassName"] == "system-cluster-critical"


def test_my_scheduler():
    _, objects = _scheduler_charts(replicas=1)
    config = yaml.safe_load(_one(objects, "ConfigMap", "my-scheduler-config")["data"]["my-scheduler-config.yaml"])
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    (extender,) = config["extenders"]
    assert extender == {
        "urlPrefix": "http://neuron-scheduler-extension.kube-system.svc.cluster.local:12345",
        "filterVerb": "filter", "bindVerb": "bind", "enableHTTPS": False,
        "nodeCacheCapable": True, "ignorable": False,
        "managedResources": [{"name": "aws.amazon.com/neuron", "ignoredByScheduler": False},
                             {"name": "aws.amazon.com/neuroncore", "ignoredByScheduler": False}],
    }
    assert config["leaderElection"]["leaderElect"] is True
    deployment = _one(objects, "Deployment", "my-scheduler")
    assert deployment["spec"]["replicas"] == 1
    spec = _pod(deployment)
    (container,) = spec["containers"]
    assert container["image"] == SCHEDULER_IMAGE
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": 10259, "scheme": "HTTPS"}
    (mount,) = container["volumeMounts"]
    assert f"--config={mount['mountPath']}/my-scheduler-config.yaml" in container["args"]
    (volume,) = spec["volumes"]
    assert volume["configMap"]["name"] == "my-scheduler-config"
    bound = {b["roleRef"]["name"] for b in (_one(objects, "ClusterRoleBinding", f"my-scheduler-as-{n}")
                                            for n in ("kube-scheduler", "volume-scheduler"))}
    assert bound == {"system:kube-scheduler", "system:volume-scheduler"}


@pytest.mark.parametrize("system_nodes, replicas", [(1, 1), (3, 2)])
def test_the_unit_passes_versions_and_waits_for_the_extension(attached, system_nodes, replicas):
    neuron = NeuronCharts(attached.stack, "Neuron", cluster=attached.cluster, device_plugin_version="2.99.0.0",
                          scheduler_extension_version="2.98.0.0", kube_scheduler_image=SCHEDULER_IMAGE,
                          system_node_min_size=system_nodes)
    assert attached.logical_id(neuron.extension) in attached.resource(neuron.my_scheduler)["DependsOn"]
    (scheduler,) = [o for o in neuron.my_scheduler_chart.to_json() if o["kind"] == "Deployment"]
    # Standbys via leader election, at most one per system node.
    assert scheduler["spec"]["replicas"] == replicas
    assert _pod(scheduler)["containers"][0]["image"] == SCHEDULER_IMAGE
    images = [c["image"] for chart in (neuron.device_plugin_chart, neuron.extension_chart)
              for o in chart.to_json() if o["kind"] in ("DaemonSet", "Deployment") for c in _pod(o)["containers"]]
    assert images == ["public.ecr.aws/neuron/neuron-device-plugin:2.99.0.0",
                      "public.ecr.aws/neuron/neuron-scheduler:2.98.0.0"]
