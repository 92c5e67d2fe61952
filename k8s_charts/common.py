"""Small helpers the charts share: pod placement, resources, priority, named RBAC resources.

Each fills a gap or a default of cdk8s-plus-27 the same way in every chart.
"""
from __future__ import annotations

import cdk8s
import cdk8s_plus_27 as kplus
import jsii

# Kubernetes' built-in priority classes; pods using them must live in kube-system.
NODE_CRITICAL = "system-node-critical"
CLUSTER_CRITICAL = "system-cluster-critical"


def resources(cpu_millis: int, memory_mib: int, memory_limit_mib: int | None = None) -> kplus.ContainerResources:
    """Requests sized for the component; a memory limit (no CPU limit, to avoid throttling).

    Given explicitly because cdk8s-plus otherwise adds its generic 1 CPU / 512Mi defaults.
    """
    return kplus.ContainerResources(
        cpu=kplus.CpuResources(request=kplus.Cpu.millis(cpu_millis)),
        memory=kplus.MemoryResources(
            request=cdk8s.Size.mebibytes(memory_mib),
            limit=cdk8s.Size.mebibytes(memory_limit_mib or memory_mib),
        ),
    )


def set_priority_class(workload: kplus.Workload, priority_class: str) -> None:
    # Escape hatch: cdk8s-plus-27 has no priorityClassName on pod specs.
    cdk8s.ApiObject.of(workload).add_json_patch(
        cdk8s.JsonPatch.add("/spec/template/spec/priorityClassName", priority_class)
    )


def drop_all_capabilities(workload: kplus.Workload, container_index: int, *, init: bool = False) -> None:
    # Escape hatch: cdk8s-plus-27's Capability enum has no "ALL".
    containers = "initContainers" if init else "containers"
    cdk8s.ApiObject.of(workload).add_json_patch(cdk8s.JsonPatch.add(
        f"/spec/template/spec/{containers}/{container_index}/securityContext/capabilities", {"drop": ["ALL"]}
    ))


def report_failures_in_status(workload: kplus.Workload) -> None:
    """A container that exits with an error shows its last log lines (our one-line reason)
    as the termination message in `kubectl describe pod`. cdk8s-plus-27 has no API for it."""
    api = cdk8s.ApiObject.of(workload)
    pod = api.to_json()["spec"]["template"]["spec"]
    for containers in ("initContainers", "containers"):
        for index in range(len(pod.get(containers, []))):
            api.add_json_patch(cdk8s.JsonPatch.add(
                f"/spec/template/spec/{containers}/{index}/terminationMessagePolicy", "FallbackToLogsOnError"))


def scraped_pod_metadata(labels: dict[str, str], metrics_port: int) -> cdk8s.ApiObjectMetadata:
    """Pod labels plus the annotations the Prometheus server's pod job scrapes by (/metrics)."""
    return cdk8s.ApiObjectMetadata(labels=labels, annotations={
        "prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port), "prometheus.io/path": "/metrics"})


def disruption_budget(scope, metadata: cdk8s.ApiObjectMetadata, labels: dict[str, str], *,
                      keep_one_ready: bool = False) -> cdk8s.ApiObject:
    """At most one pod of the set voluntarily down at a time; with keep_one_ready, never
    the last ready one (a drain waits until another replica is ready)."""
    # cdk8s-plus-27 has no PodDisruptionBudget; policy/v1 is validated by the tests.
    budget = cdk8s.ApiObject(scope, "DisruptionBudget", api_version="policy/v1", kind="PodDisruptionBudget",
                             metadata=metadata)
    limit = {"minAvailable": 1} if keep_one_ready else {"maxUnavailable": 1}
    budget.add_json_patch(cdk8s.JsonPatch.add("/spec", {**limit, "selector": {"matchLabels": labels}}))
    return budget


def wait_for_deregistration(workload: kplus.Workload, seconds: int) -> None:
    """preStop sleep: keep serving until the load balancer has stopped sending to the pod."""
    cdk8s.ApiObject.of(workload).add_json_patch(cdk8s.JsonPatch.add(
        "/spec/template/spec/containers/0/lifecycle", {"preStop": {"exec": {"command": ["sleep", str(seconds)]}}}))


def spread_softly(workload: kplus.Workload, topology_key: str, labels: dict[str, str]) -> None:
    """Spread pods over a topology when capacity allows, never block scheduling on it
    (cdk8s-plus-27's spread() is a hard anti-affinity: one pod per domain)."""
    cdk8s.ApiObject.of(workload).add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/topologySpreadConstraints", [{
        "maxSkew": 1,
        "topologyKey": topology_key,
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": labels},
    }]))


def default_seccomp(workload: kplus.Workload) -> None:
    # Escape hatch: cdk8s-plus-27 has no seccompProfile; RuntimeDefault is the restricted baseline.
    cdk8s.ApiObject.of(workload).add_json_patch(cdk8s.JsonPatch.add(
        "/spec/template/spec/securityContext/seccompProfile", {"type": "RuntimeDefault"}))


_TAINT_EFFECTS = {
    "NoSchedule": kplus.TaintEffect.NO_SCHEDULE,
    "PreferNoSchedule": kplus.TaintEffect.PREFER_NO_SCHEDULE,
    "NoExecute": kplus.TaintEffect.NO_EXECUTE,
}


def taint_effect(effect: str) -> kplus.TaintEffect:
    """cdk8s-plus's enum member for a taint effect in Kubernetes spelling."""
    return _TAINT_EFFECTS[effect]


def tolerate(scheduling: kplus.PodScheduling, taint) -> None:
    """Tolerate a taint (a stacks.cluster.neuron.hardware.Taint) whatever its value."""
    scheduling.tolerate(kplus.Node.tainted(kplus.NodeTaintQuery.exists(taint.key, effect=taint_effect(taint.effect))))


def place_on(workload: kplus.Workload, label: tuple[str, str]) -> None:
    """Require nodes with this label (a required node affinity)."""
    key, value = label
    workload.scheduling.attract(kplus.Node.labeled(kplus.NodeLabelQuery.is_(key, value)))


@jsii.implements(kplus.IApiResource)
class NamedResource:
    """An RBAC rule target restricted to one object by name (`resourceNames`).

    cdk8s-plus only adds resourceNames for objects the chart itself creates;
    a leader-election Lease is created at run time by the component.
    """

    def __init__(self, api_group: str, resource_type: str, resource_name: str) -> None:
        self._api_group = api_group
        self._resource_type = resource_type
        self._resource_name = resource_name

    @property
    def api_group(self) -> str:
        return self._api_group

    @property
    def resource_type(self) -> str:
        return self._resource_type

    @property
    def resource_name(self) -> str:
        return self._resource_name
