"""Reading rendered Kubernetes objects: a workload's pod spec, one container, its env."""


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def container(obj: dict, name: str) -> dict:
    pod = pod_spec(obj)
    return next(c for c in pod["containers"] + pod.get("initContainers", []) if c["name"] == name)


def env(c: dict) -> dict:
    return {e["name"]: e.get("value") for e in c.get("env", [])}
