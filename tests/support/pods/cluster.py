"""Helpers for the harness's tests: start a server pod, call it, and what the endpoints
controller and kube-proxy do for a Service (tests/support/pods/service.py)."""
from __future__ import annotations

import io

import httpx
from PIL import Image

from tools.dev.localstack import free_port
from tests.support.pods.kubelet import Container, Pod, find_container


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def start_server(pod: Pod, version: str, adapt, extra_env: dict | None = None, jobs: dict | None = None,
                 wait: bool = True) -> Container:
    """The pod's server container on a free loopback port, ready by its own readinessProbe
    (wait=False: started only; `until_ready` then waits, so that a start overlaps other work)."""
    port = find_container(pod.spec, "server")["ports"][0]["containerPort"]
    changes = {"jobs": jobs} if jobs else {}
    container = pod.container("server", adapt(ports={port: free_port()}, **changes,
                                              extra_env={"SD21_MODEL_VERSION": version, **(extra_env or {})}))
    container.start()
    return until_ready(container) if wait else container


def until_ready(container: Container) -> Container:
    try:
        container.wait_http("readinessProbe", timeout=240)
    except BaseException:
        container.kill()
        raise
    return container


def generate(base_url: str) -> Image.Image:
    response = httpx.post(base_url + "/v1/images/generations", timeout=120,
                          json={"prompt": "a lighthouse at dusk", "steps": 2, "seed": 7, "response_format": "png"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def metrics_url_of(container) -> str:
    """The container's port named "metrics" (the gateway's), by its spec."""
    port = next(p["containerPort"] for p in container.spec["ports"] if p.get("name") == "metrics")
    return f"http://127.0.0.1:{container.adaptations.port(port)}/metrics"


def url_of(container) -> str:
    return f"http://127.0.0.1:{container.adaptations.port(container.spec['ports'][0]['containerPort'])}"


