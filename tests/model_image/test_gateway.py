"""The scale-to-zero gateway for real on loopback: in front of nothing (cold),
and in front of the real server with the tiny pipeline (forwarded unchanged)."""
from __future__ import annotations

import io
import subprocess
import sys
import threading

import httpx
import pytest
from PIL import Image

from sd21_testlib import free_port, subprocess_env, wait_for


def metric(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} not exported once:\n{text}"
    return values[0]


@pytest.fixture()
def cold_gateway():
    """`python -m sd21.gateway` (the image's entrypoint) with nothing listening upstream."""
    port, metrics_port, dead = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sd21.gateway", "--upstream", f"http://127.0.0.1:{dead}", "--host", "127.0.0.1",
         "--port", str(port), "--metrics-port", str(metrics_port), "--cold-retry-after", "45"],
        env=subprocess_env({}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", timeout=30)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cold_requests_get_503_with_retry_after_and_are_counted(cold_gateway):
    url, metrics_url = cold_gateway
    assert metric(httpx.get(metrics_url).text, "sd21_gateway_cold_requests_total") == 0

    api = httpx.post(url + "/v1/images/generations", json={"prompt": "a red cube"}, timeout=10)
    assert api.status_code == 503
    assert api.headers["retry-after"] == "45"
    assert api.json()["error"]["type"] == "warming_up"
    assert "scales to zero" in api.json()["error"]["message"]

    browser = httpx.get(url + "/ui", headers={"Accept": "text/html"}, timeout=10)
    assert browser.status_code == 503 and browser.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh" content="45">' in browser.text

    # The gateway's own health never depends on a replica: the ALB keeps it in service at zero.
    assert httpx.get(url + "/health", timeout=10).status_code == 200
    exported = httpx.get(metrics_url).text
    assert metric(exported, "sd21_gateway_cold_requests_total") == 2
    assert metric(exported, "sd21_gateway_inflight_requests") == 0
    # Metrics are not reachable through the proxied port (it would forward /metrics upstream).
    assert httpx.get(url + "/metrics", timeout=10).status_code == 503


def test_bad_upstream_setting_is_a_clear_error():
    result = subprocess.run([sys.executable, "-m", "sd21.gateway", "--upstream", "sd21-inference:80"],
                            env=subprocess_env({}), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--upstream (or SD21_UPSTREAM) must be an http(s):// URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture()
def gateway_in_front_of(request):
    """A gateway in this process (uvicorn thread) forwarding to the given URL."""
    import uvicorn
    from prometheus_client import CollectorRegistry

    from sd21.gateway import GatewaySettings, create_app

    servers = []

    def start(upstream: str):
        app = create_app(GatewaySettings(upstream, request_timeout_s=60), CollectorRegistry())
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_for(f"http://127.0.0.1:{port}/health", timeout=30)
        return f"http://127.0.0.1:{port}", app.state.metrics

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


def test_requests_are_forwarded_unchanged_to_the_real_server(live_server, gateway_in_front_of):
    url, metrics = gateway_in_front_of(live_server.url)
    image = httpx.post(url + "/v1/images/generations", timeout=120,
                       json={"prompt": "a red cube", "steps": 2, "seed": 7, "response_format": "png"})
    assert image.status_code == 200, image.text
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (512, 512)

    # The server's 4xx and its reason come through as they are.
    invalid = httpx.post(url + "/v1/images/generations", timeout=30, json={"prompt": "x", "size": "256x256"})
    assert invalid.status_code == 422
    assert invalid.json() == httpx.post(live_server.url + "/v1/images/generations", timeout=30,
                                        json={"prompt": "x", "size": "256x256"}).json()
    # Query strings and the upstream's own readiness pass through.
    assert httpx.get(url + "/ready", timeout=30).status_code == 200
    assert httpx.get(url + "/openapi.json?x=1", timeout=30).json()["info"]["title"].startswith("Stable Diffusion")
    assert metrics.cold._value.get() == 0
    assert metrics.inflight._value.get() == 0


def test_a_replica_that_comes_up_is_used_at_once(gateway_in_front_of, live_server):
    """Cold while nothing listens; the first request after the upstream is up is forwarded."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    import uvicorn

    port = free_port()
    url, metrics = gateway_in_front_of(f"http://127.0.0.1:{port}")
    assert httpx.get(url + "/hello", timeout=10).status_code == 503
    assert metrics.cold._value.get() == 1

    async def hello(request):
        return PlainTextResponse("hi " + request.query_params.get("who", ""), headers={"X-Upstream": "yes"})

    upstream = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hello", hello)]), host="127.0.0.1",
                                             port=port, log_level="warning"))
    thread = threading.Thread(target=upstream.run, daemon=True)
    thread.start()
    try:
        wait_for(f"http://127.0.0.1:{port}/hello", timeout=30)
        answer = httpx.get(url + "/hello?who=me", timeout=10)
        assert (answer.status_code, answer.text, answer.headers["x-upstream"]) == (200, "hi me", "yes")
        assert metrics.cold._value.get() == 1
    finally:
        upstream.should_exit = True
        thread.join(timeout=30)
