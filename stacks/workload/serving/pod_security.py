"""Security settings every workload container shares: non-root, no privilege
escalation, read-only root filesystem (writable paths are emptyDirs). Dropping
all capabilities and the seccomp profile are patched on (k8s_charts/common.py)."""
import cdk8s_plus_27 as kplus

from stacks.workload.serving.spec import IMAGE_USER


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
