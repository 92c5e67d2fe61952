"""Settings every workload container shares: non-root, no privilege escalation,
no capabilities, read-only root filesystem (writable paths are emptyDirs)."""
import cdk8s
import cdk8s_plus_27 as kplus

from k8s_charts.workload.spec import IMAGE_USER


def restricted_container() -> kplus.ContainerSecurityContextProps:
    return kplus.ContainerSecurityContextProps(
        ensure_non_root=True,
        user=IMAGE_USER,
        group=IMAGE_USER,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        privileged=False,
    )


def restricted_pod() -> kplus.PodSecurityContextProps:
    return kplus.PodSecurityContextProps(ensure_non_root=True, user=IMAGE_USER, group=IMAGE_USER, fs_group=IMAGE_USER)


def drop_all_capabilities(workload: kplus.AbstractPod | kplus.Workload, containers: list[str]) -> None:
    """cdk8s-plus-27 has no field for capabilities; patch them onto the pod template."""
    api = cdk8s.ApiObject.of(workload)
    prefix = "/spec/template/spec" if not isinstance(workload, kplus.Pod) else "/spec"
    for path in containers:
        api.add_json_patch(cdk8s.JsonPatch.add(f"{prefix}/{path}/securityContext/capabilities",
                                               {"drop": ["ALL"]}))
    api.add_json_patch(cdk8s.JsonPatch.add(f"{prefix}/securityContext/seccompProfile", {"type": "RuntimeDefault"}))
