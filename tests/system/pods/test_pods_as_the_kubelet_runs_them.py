"""compile -> stage -> serve (-> gateway at scale to zero), each container run from its
synthesized spec (command, env, mounts, read-only root, uid, working directory) under
bubblewrap, on the cpu backend, against loopback S3: it must end in a 512x512 PNG."""
from __future__ import annotations

import copy
import signal
import time

import pytest

from tools.dev.localstack import free_port
from tests.support.pods.cluster import env_of, generate, start_server, url_of
from tests.support.pods.kubelet import MODEL_IMAGE, Image, Pod, find_container, image_for, pod_spec


@pytest.fixture
def server(serving):
    return serving


def test_compile_stage_serve_from_the_synthesized_specs_yield_a_png(server):
    image = generate(url_of(server))
    assert image.size == (512, 512) and image.mode == "RGB"
    server.wait_http("livenessProbe", timeout=10)


def test_the_job_env_names_the_version_the_deployment_stages(compile_pod_spec, inference_pod_spec, adapt, pods_root):
    """Asked of sd21-compile itself, run with the Job's own env on its own backend (neuron)."""
    pod = Pod(compile_pod_spec, pods_root)
    compile_container = pod.container("compile", adapt(backend=None))
    result = compile_container.run(timeout=120, command=[*compile_container.spec["command"], "--print-version"])
    assert result.returncode == 0, result.output
    computed = result.output.strip().splitlines()[-1]
    assert computed == env_of(compile_container.spec)["SD21_MODEL_VERSION"]
    for name in ("stage", "server"):
        assert env_of(find_container(inference_pod_spec, name))["SD21_MODEL_VERSION"] == computed


def test_gateway_at_scale_to_zero_forwards_to_the_server(server, gateway_before):
    gateway = gateway_before(url_of(server))
    assert generate(url_of(gateway)).size == (512, 512)


def test_server_drains_and_exits_zero_on_sigterm(inference_pod, staged, adapt):
    container = start_server(inference_pod, staged, adapt)
    container.signal(signal.SIGTERM)
    assert container.wait(timeout=60) == 0, container.log()


# --- the harness catches what the kubelet would --------------------------------------

def _without_mounts(spec: dict, container: str, *paths: str) -> dict:
    broken = copy.deepcopy(spec)
    target = find_container(broken, container)
    target["volumeMounts"] = [m for m in target["volumeMounts"] if m["mountPath"] not in paths]
    return broken


def test_compile_without_writable_tmp_fails_with_a_clear_message(compile_pod_spec, adapt, pods_root, cpu_version):
    pod = Pod(_without_mounts(compile_pod_spec, "compile", "/tmp", "/var/tmp"), pods_root)
    result = pod.container("compile", adapt(extra_env={"SD21_MODEL_VERSION": cpu_version})).run(timeout=120)
    assert result.returncode == 2, result.output
    assert "/tmp is not writable" in result.output and "Traceback" not in result.output


def test_writes_outside_the_mounts_fail(inference_pod_spec, adapt, pods_root):
    pod = Pod(inference_pod_spec, pods_root)
    try:
        server = pod.container("server", adapt())
        for path in ("/opt/sd21/x", "/model/x", "/var/tmp/x", "/x"):  # image, readOnly mount, root, root
            result = server.run(timeout=30, command=["python3", "-c", f"open({path!r}, 'w')"])
            assert result.returncode != 0 and "Read-only file system" in result.output, (path, result.output)
        result = server.run(timeout=30, command=["python3", "-c", "open('/tmp/x', 'w').write('ok')"])
        assert result.returncode == 0, result.output  # its emptyDir
    finally:
        pod.cleanup()


def test_stage_without_its_volume_fails(inference_pod_spec, adapt, pods_root, compiled):
    pod = Pod(_without_mounts(inference_pod_spec, "stage", "/model"), pods_root)
    try:
        result = pod.container("stage", adapt(extra_env={"SD21_MODEL_VERSION": compiled})).run(timeout=120)
        assert result.returncode != 0
        assert "Read-only file system" in result.output or "No such file" in result.output, result.output
    finally:
        pod.cleanup()


def test_runs_as_the_image_user(inference_pod_spec, adapt, pods_root):
    """The process's uid is the image's own non-root USER (model_image/Dockerfile), as the spec asks."""
    image_user = Image.from_dockerfile(MODEL_IMAGE / "Dockerfile").user
    assert image_user != 0
    pod = Pod(inference_pod_spec, pods_root)
    try:
        result = pod.container("server", adapt()).run(timeout=30, command=["id", "-u"])
        assert result.output.strip() == str(image_user)
    finally:
        pod.cleanup()


def test_every_container_of_ours_runs_as_its_image_user(deployed, zero):
    """Each Dockerfile's USER owns what the image installs; a pod that asks for another uid
    (or root) would run ours as a stranger. Both modes, init containers included."""
    checked = 0
    for obj in deployed + zero.objects:
        if obj["kind"] not in ("Job", "Deployment"):
            continue
        pod = pod_spec(obj)
        for container in pod["containers"] + pod.get("initContainers", []):
            own, shared = container.get("securityContext", {}), pod.get("securityContext", {})
            uid = own.get("runAsUser", shared.get("runAsUser"))
            assert uid == image_for(container).user != 0, (obj["metadata"]["name"], container["name"], uid)
            checked += 1
    assert checked >= 6  # compile, stage, server, cold-start metrics; gateway and the rest at zero


# --- a broken node or artifact shows in seconds, as a restarting container ------------

def test_server_on_a_node_without_a_neuron_device_exits_at_once(inference_pod_spec, adapt, pods_root):
    """The spec's own backend (neuron) on this machine, which has no Neuron driver."""
    pod = Pod(inference_pod_spec, pods_root)
    try:
        started = time.monotonic()
        result = pod.container("server", adapt(backend=None)).run(timeout=60)
        assert result.returncode == 7, result.output
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Neuron driver is not loaded" in lines[0], result.output
        assert "Traceback" not in result.output
        print(f"\nserver without a Neuron device exited 7 after {time.monotonic() - started:.1f}s")
    finally:
        pod.cleanup()


def test_server_whose_model_does_not_load_exits_instead_of_idling(inference_pod_spec, adapt, pods_root):
    pod = Pod(inference_pod_spec, pods_root)  # a fresh pod: /model is empty
    try:
        spec = find_container(inference_pod_spec, "server")
        result = pod.container("server", adapt(ports={spec["ports"][0]["containerPort"]: free_port()})).run(timeout=120)
        assert result.returncode == 1, result.output
        assert "error: the model failed to load" in result.output and "Traceback" not in result.output
    finally:
        pod.cleanup()


def test_stage_on_a_node_without_the_neuron_driver_downloads_nothing(inference_pod_spec, adapt, pods_root, s3_env):
    """The spec's backend (neuron) on this machine: exit 7 before any S3 request."""
    pod = Pod(inference_pod_spec, pods_root)
    try:
        unreachable = {**s3_env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}"}  # nothing listens
        stage = pod.container("stage", adapt(backend=None, s3_env=unreachable))
        result = stage.run(timeout=60)
        assert result.returncode == 7, result.output
        assert "Neuron driver is not loaded" in result.output and "Traceback" not in result.output
        assert list(pod.volumes["model"].iterdir()) == []
    finally:
        pod.cleanup()
