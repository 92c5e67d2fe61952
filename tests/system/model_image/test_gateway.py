"""The scale-to-zero gateway for real on loopback: in front of nothing (cold),
and in front of the real server with the tiny pipeline (forwarded unchanged)."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time

import httpx
import pytest
from PIL import Image

from tests.support.sd21_testlib import free_port, serving, subprocess_env, wait_for


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
         "--port", str(port), "--metrics-port", str(metrics_port), "--cold-retry-after", "45",
         # The smallest values allowed: a request timeout and an expected cold start of 1 s.
         "--request-timeout", "1", "--cold-start-seconds", "1"],
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
    # People see the wait counted down: the page reloads every 15 s (not Retry-After's 45).
    assert '<meta http-equiv="refresh" content="15">' in browser.text
    assert "Starting, about 10 s" in browser.text  # never fewer than 10 s promised, even past the estimate

    # The gateway's own health never depends on a replica: the ALB keeps it in service at zero.
    assert httpx.get(url + "/health", timeout=10).status_code == 200
    exported = httpx.get(metrics_url).text
    assert metric(exported, "sd21_gateway_cold_requests_total") == 2
    assert metric(exported, "sd21_gateway_received_requests_total") == 2  # not the gateway's own /health
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
def gateway_in_front_of():
    """A gateway in this process (uvicorn thread) forwarding to the given URL."""
    from prometheus_client import CollectorRegistry

    from sd21.gateway import GatewaySettings, create_app

    with contextlib.ExitStack() as servers:
        def start(upstream: str):
            app = create_app(GatewaySettings(upstream, request_timeout_s=60), CollectorRegistry())
            return servers.enter_context(serving(app)), app.state.metrics

        yield start


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
    # The web UI builds its URLs from the client's Host, which the gateway passes on.
    config = httpx.get(url + "/ui/config", headers={"Host": "sd.example.com"}, timeout=30)
    assert config.status_code == 200 and "//sd.example.com/ui" in config.json()["root"]
    # An oversized body is refused by the gateway itself, with the reason.
    huge = httpx.post(url + "/v1/images/generations", timeout=30, content=b"x" * (2 << 20),
                      headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "request_too_large"
    # Query strings and the upstream's own readiness pass through.
    assert httpx.get(url + "/ready", timeout=30).status_code == 200
    assert httpx.get(url + "/openapi.json?x=1", timeout=30).json()["info"]["title"].startswith("Stable Diffusion")
    assert metrics.cold._value.get() == 0
    # Back to 0 once every relay has finished (it ends just after the client has the last byte).
    deadline = time.monotonic() + 5
    while metrics.inflight._value.get() != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metrics.inflight._value.get() == 0


def test_a_replica_that_comes_up_is_used_at_once(gateway_in_front_of):
    """Cold while nothing listens; the first request after the upstream is up is forwarded."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    port = free_port()
    url, metrics = gateway_in_front_of(f"http://127.0.0.1:{port}")
    assert httpx.get(url + "/hello", timeout=10).status_code == 503
    assert metrics.cold._value.get() == 1

    async def hello(request):
        return PlainTextResponse("hi " + request.query_params.get("who", ""), headers={"X-Upstream": "yes"})

    with serving(Starlette(routes=[Route("/hello", hello)]), port=port):
        answer = httpx.get(url + "/hello?who=me", timeout=10)
        assert (answer.status_code, answer.text, answer.headers["x-upstream"]) == (200, "hi me", "yes")
        assert metrics.cold._value.get() == 1


def _echo_upstream():
    """A loopback upstream that shows what reached it."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def echo(request):
        response = JSONResponse({
            "raw_path": request.scope["raw_path"].decode(), "query": request.scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
            "client_port": request.client.port, "body": (await request.body()).decode()})
        response.raw_headers.append((b"set-cookie", b"a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT"))
        response.raw_headers.append((b"set-cookie", b"b=2"))
        return response

    async def broken(request):
        async def chunks():
            yield b"partial"
            await asyncio.sleep(0.1)
            raise RuntimeError("upstream died mid-response")
        return StreamingResponse(chunks(), media_type="application/octet-stream")

    return Starlette(routes=[Route("/broken", broken), Route("/{path:path}", echo, methods=["GET", "POST"])])


@pytest.fixture()
def echo_upstream():
    with serving(_echo_upstream()) as url:
        yield url


def test_forwarding_keeps_what_the_client_sent(echo_upstream, gateway_in_front_of):
    url, metrics = gateway_in_front_of(echo_upstream)
    headers = [("Host", "sd.example.com"), ("Cookie", "a=1"), ("Cookie", "b=2"), ("X-Forwarded-For", "1.1.1.1"),
               ("X-Forwarded-For", "2.2.2.2")]
    with httpx.Client(timeout=10) as client:
        del client.headers["accept-encoding"]  # a client that asks for no compression
        first = client.post(url + "/v1/a%2Fb/%25f?b=2&a=1&a=3&flag", headers=headers, content=b'{"x": 1}')
        second = client.get(url + "/again")
    seen = first.json()
    assert (seen["raw_path"], seen["query"], seen["body"]) == ("/v1/a%2Fb/%25f", "b=2&a=1&a=3&flag", '{"x": 1}')
    sent = [(k.lower(), v) for k, v in seen["headers"]]
    # Host is the client's (the UI builds its URLs from it); repeated headers stay repeated.
    assert ("host", "sd.example.com") in sent
    assert [v for k, v in sent if k == "cookie"] == ["a=1", "b=2"]
    assert [v for k, v in sent if k == "x-forwarded-for"] == ["1.1.1.1", "2.2.2.2"]
    # No compression the client did not ask for.
    assert ("accept-encoding", "identity") in sent
    # Repeated response headers come back as they were.
    assert first.headers.get_list("set-cookie") == ["a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT", "b=2"]
    # A new upstream connection per request: kube-proxy then picks a pod per request.
    assert seen["client_port"] != second.json()["client_port"]


def test_an_upstream_failure_mid_response_cuts_the_connection_and_releases_the_gauge(echo_upstream,
                                                                                     gateway_in_front_of):
    url, metrics = gateway_in_front_of(echo_upstream)
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/broken", timeout=10).raise_for_status()
    deadline = time.monotonic() + 5
    while metrics.inflight._value.get() != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metrics.inflight._value.get() == 0
    assert metrics.outcomes.labels("upstream_broken")._value.get() == 1


def test_a_connect_timeout_counts_as_cold():
    """Where a Service without ready pods drops packets instead of refusing them."""
    from prometheus_client import CollectorRegistry
    from starlette.testclient import TestClient

    from sd21.gateway import GatewaySettings, create_app

    def timeout(request):
        raise httpx.ConnectTimeout("timed out", request=request)

    app = create_app(GatewaySettings("http://upstream.invalid", request_timeout_s=60), CollectorRegistry(),
                     transport=httpx.MockTransport(timeout))
    with TestClient(app) as client:
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "60"
    assert app.state.metrics.cold._value.get() == 1


def _gateway_over(answers: list):
    """The gateway app in front of a stand-in upstream that gives these answers in turn
    (each a function making a fresh response; the last one repeats)."""
    from prometheus_client import CollectorRegistry

    from sd21.gateway import GatewaySettings, create_app

    seen = []

    def upstream(request):  # (MockTransport responses stream once: made afresh each time)
        seen.append(request.content)
        return answers[min(len(seen), len(answers)) - 1]()

    app = create_app(GatewaySettings("http://upstream.invalid", request_timeout_s=60), CollectorRegistry(),
                     transport=httpx.MockTransport(upstream))
    return app, seen


def _answer(status: int, body: dict | None = None, **headers: str):
    import json

    content = json.dumps(body or {}).encode()
    return lambda: httpx.Response(status, headers={"content-type": "application/json", **headers},
                                  stream=httpx.ByteStream(content))


def _refused(kind: str = "unhealthy"):
    from sd21.headers import REFUSED_HEADER

    return _answer(503, {"error": {"type": kind, "message": "not this replica"}},
                   **{REFUSED_HEADER: kind, "Retry-After": "1"})


def test_a_request_a_replica_refused_is_sent_again_elsewhere():
    from starlette.testclient import TestClient

    app, seen = _gateway_over([_refused(), _refused("draining"), _answer(200, {"ok": 1})])
    with TestClient(app) as client:
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
    assert answer.status_code == 200 and answer.json() == {"ok": 1}
    assert seen == [b'{"prompt":"x"}'] * 3  # the same body each time
    assert app.state.metrics.outcomes.labels("retried_elsewhere")._value.get() == 2


def test_refusals_are_retried_a_bounded_number_of_times():
    from starlette.testclient import TestClient

    from sd21.gateway import RETRIES_ELSEWHERE

    app, seen = _gateway_over([_refused()])
    with TestClient(app) as client:
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
    assert answer.status_code == 503 and answer.json()["error"]["type"] == "unhealthy"
    assert len(seen) == RETRIES_ELSEWHERE + 1 == 3


@pytest.mark.parametrize("answer", [
    (503, {}, "not_ready"),  # no refusal header
    (500, {}, "internal"),
    (429, {"Retry-After": "3"}, "overloaded"),
], ids=["503-without-header", "500", "429"])
def test_other_answers_are_not_sent_again(answer):
    from starlette.testclient import TestClient

    status, headers, kind = answer
    app, seen = _gateway_over([_answer(status, {"error": {"type": kind}}, **headers), _answer(200)])
    with TestClient(app) as client:
        assert client.post("/v1/images/generations", json={"prompt": "x"}).status_code == status
    assert len(seen) == 1


def _holding_gateway(upstream, **settings):
    from prometheus_client import CollectorRegistry

    from sd21.gateway import GatewaySettings, create_app

    return create_app(GatewaySettings("http://upstream.invalid", request_timeout_s=60, hold_poll_s=0.05, **settings),
                      CollectorRegistry(), transport=httpx.MockTransport(upstream))


def test_a_request_is_held_until_a_replica_answers():
    from starlette.testclient import TestClient

    state = {"ready_after": time.monotonic() + 0.5, "tries": 0}

    def upstream(request):
        state["tries"] += 1
        if time.monotonic() < state["ready_after"]:
            raise httpx.ConnectError("refused", request=request)
        return _answer(200, {"ok": 1})()

    app = _holding_gateway(upstream, hold_requests=4, hold_s=10)
    with TestClient(app) as client:
        started = time.monotonic()
        state["ready_after"] = started + 0.5  # from here: the client's start-up is not part of the wait
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
    assert answer.status_code == 200 and 0.5 <= time.monotonic() - started < 3
    assert state["tries"] > 2
    metrics = app.state.metrics
    assert metrics.outcomes.labels("held_then_forwarded")._value.get() == 1
    assert metrics.cold._value.get() == 0 and metrics.held._value.get() == 0
    # The cold start it saw: from the first request that found no replica to the answer.
    assert 0.5 <= metrics.last_cold_start._value.get() < 3


def test_holding_is_bounded_in_time_and_in_count():
    import concurrent.futures

    from starlette.testclient import TestClient

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    app = _holding_gateway(refused, hold_requests=1, hold_s=1)
    with TestClient(app) as client:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/v1/images/generations", json={"prompt": "x"})
            time.sleep(0.3)
            started = time.monotonic()
            second = client.post("/v1/images/generations", json={"prompt": "y"})  # over the count: at once
            assert second.status_code == 503 and time.monotonic() - started < 0.5
            assert first.result().status_code == 503  # after its second
    assert first.result().json()["error"]["type"] == "warming_up"
    assert app.state.metrics.cold._value.get() == 2


def test_people_are_told_how_long_instead_of_waiting_on_a_blank_page():
    from starlette.testclient import TestClient

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    app = _holding_gateway(refused, hold_requests=4, hold_s=30, cold_start_s=120)
    with TestClient(app) as client:
        started = time.monotonic()
        page = client.get("/ui/", headers={"Accept": "text/html"})
        assert page.status_code == 503 and time.monotonic() - started < 1  # not held
        time.sleep(1.2)
        later = client.get("/ui/", headers={"Accept": "text/html"})
    assert "Starting, about 120 s" in page.text and "(0 s so far)" in page.text
    assert "Starting, about 119 s" in later.text and "(1 s so far)" in later.text  # counted down
    assert 'http-equiv="refresh"' in page.text


# --- edges mutation testing found untested -------------------------------------------

def test_an_upstream_that_does_not_answer_in_time_is_a_504():
    from starlette.testclient import TestClient

    def slow(request):
        raise httpx.ReadTimeout("no answer", request=request)

    app = _holding_gateway(slow, hold_requests=4, hold_s=10)
    with TestClient(app) as client:
        started = time.monotonic()
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
    assert answer.status_code == 504 and answer.json()["error"]["type"] == "upstream_timeout"
    assert time.monotonic() - started < 2, "a replica that answers late is not a missing one: not held"
    assert app.state.metrics.outcomes.labels("upstream_timeout")._value.get() == 1


JSON = {"Content-Type": "application/json"}


def _generation_of(size: int) -> bytes:
    """A valid generation request of exactly `size` bytes (JSON allows trailing whitespace)."""
    body = b'{"prompt": "x"}'
    return body + b" " * (size - len(body))


def test_a_body_declared_too_large_is_refused_without_reading_it():
    from starlette.testclient import TestClient

    from sd21.headers import MAX_BODY_BYTES

    seen = []
    app = _holding_gateway(lambda request: seen.append(request) or _answer(200)())
    with TestClient(app) as client:
        at_limit = client.post("/v1/images/generations", content=_generation_of(MAX_BODY_BYTES), headers=JSON)
        over = client.post("/v1/images/generations", content=_generation_of(MAX_BODY_BYTES + 1), headers=JSON)
    assert at_limit.status_code == 200 and len(seen) == 1
    assert over.status_code == 413 and over.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize("flag, value, message", [
    ("--hold-requests", "-1", "--hold-requests must not be negative"),
    ("--hold-seconds", "-1", "--hold-seconds must not be negative"),
    ("--request-timeout", "0", "--request-timeout must be at least 1 second"),
    ("--cold-retry-after", "0", "--cold-retry-after must be at least 1 second"),
    ("--cold-start-seconds", "0", "--cold-start-seconds must be at least 1 second"),
])
def test_bad_numbers_are_refused_naming_the_flag(flag, value, message, capsys):
    from sd21.gateway import main

    with pytest.raises(SystemExit) as exited:
        main(["--upstream", "http://127.0.0.1:1", flag, value])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_held_requests_free_their_place_once_answered():
    """hold_requests=1: after one held request is answered, the next cold one is held again
    (not refused as if the place were still taken); and the cold start it reports is the time
    it really took."""
    import concurrent.futures

    from starlette.testclient import TestClient

    state = {"ready_after": time.monotonic() + 2.0}  # long enough that a ratio of clocks (~1.0) would show

    def upstream(request):
        if time.monotonic() < state["ready_after"]:
            raise httpx.ConnectError("refused", request=request)
        return _answer(200, {"ok": 1})()

    app = _holding_gateway(upstream, hold_requests=1, hold_s=10)
    metrics = app.state.metrics
    with TestClient(app) as client:
        started = time.monotonic()
        assert client.post("/v1/images/generations", json={"prompt": "x"}).status_code == 200
        took = time.monotonic() - started
        assert abs(metrics.last_cold_start._value.get() - took) < 0.3
        state["ready_after"] = time.monotonic() + 1.0  # the replica went away; another starts
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            held = pool.submit(client.post, "/v1/images/generations", json={"prompt": "y"})
            time.sleep(0.3)
            assert client.post("/v1/images/generations", json={"prompt": "z"}).status_code == 503  # one place
            assert held.result().status_code == 200
    assert metrics.outcomes.labels("held_then_forwarded")._value.get() == 2
    assert metrics.cold._value.get() == 1 and metrics.held._value.get() == 0


def test_an_upstream_that_breaks_the_exchange_is_a_502():
    from starlette.testclient import TestClient

    def broken(request):
        raise httpx.RemoteProtocolError("peer closed the connection", request=request)

    app = _holding_gateway(broken, hold_requests=4, hold_s=10)
    with TestClient(app) as client:
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
    assert answer.status_code == 502 and answer.json()["error"]["type"] == "upstream_error"
    assert "RemoteProtocolError" in answer.json()["error"]["message"]
    assert app.state.metrics.outcomes.labels("upstream_error")._value.get() == 1


def test_a_held_request_is_forwarded_within_a_second_of_a_replica_being_ready():
    """The default poll: someone waiting through a cold start loses at most a second more."""
    from prometheus_client import CollectorRegistry
    from starlette.testclient import TestClient

    from sd21.gateway import GatewaySettings, create_app

    state = {"ready_at": time.monotonic() + 0.3, "answered_at": None, "refused": 0}

    def upstream(request):
        if time.monotonic() < state["ready_at"]:
            state["refused"] += 1
            raise httpx.ConnectError("refused", request=request)
        state["answered_at"] = state["answered_at"] or time.monotonic()
        return _answer(200, {"ok": 1})()

    app = create_app(GatewaySettings("http://upstream.invalid", request_timeout_s=60, hold_requests=1, hold_s=10),
                     CollectorRegistry(), transport=httpx.MockTransport(upstream))
    with TestClient(app) as client:
        assert client.post("/v1/images/generations", json={"prompt": "x"}).status_code == 200
    assert state["answered_at"] - state["ready_at"] <= 1.1
    # ... and a missing replica is asked about once a second, not in a tight loop.
    assert state["refused"] == 1


def test_holding_ends_at_its_deadline_even_between_polls():
    """Held for hold_s, not rounded up to the next poll (the default, once a second)."""
    from prometheus_client import CollectorRegistry
    from starlette.testclient import TestClient

    from sd21.gateway import GatewaySettings, create_app

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    app = create_app(GatewaySettings("http://upstream.invalid", request_timeout_s=60, hold_requests=1, hold_s=0.4),
                     CollectorRegistry(), transport=httpx.MockTransport(refused))
    with TestClient(app) as client:
        started = time.monotonic()
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
        waited = time.monotonic() - started
    assert answer.status_code == 503 and 0.4 <= waited < 0.9, waited


def test_a_streamed_body_too_large_is_refused_as_it_arrives():
    """No Content-Length (chunked): the limit is counted while reading."""
    from starlette.testclient import TestClient

    from sd21.headers import MAX_BODY_BYTES

    def chunks(size: int):
        body = _generation_of(size)
        for start in range(0, size, 64 << 10):
            yield body[start:start + (64 << 10)]

    seen = []
    app = _holding_gateway(lambda request: seen.append(request.content) or _answer(200)())
    with TestClient(app) as client:
        at_limit = client.post("/v1/images/generations", content=chunks(MAX_BODY_BYTES), headers=JSON)
        over = client.post("/v1/images/generations", content=chunks(MAX_BODY_BYTES + 1), headers=JSON)
    assert at_limit.status_code == 200 and [len(body) for body in seen] == [MAX_BODY_BYTES]
    assert over.status_code == 413 and over.json()["error"]["type"] == "request_too_large"


def test_a_declared_length_over_the_limit_is_answered_without_waiting_for_the_body():
    """A client that announces a huge body and sends none gets its 413 at once."""
    import socket

    from prometheus_client import CollectorRegistry

    from sd21.gateway import GatewaySettings, create_app
    from sd21.headers import MAX_BODY_BYTES

    app = create_app(GatewaySettings("http://127.0.0.1:1", request_timeout_s=60), CollectorRegistry())
    with serving(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=3) as raw:
            raw.sendall(f"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\n"
                        f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
            head = raw.recv(4096)  # a timeout here means the gateway waited for the body
    assert head.startswith(b"HTTP/1.1 413"), head


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_a_browsers_other_requests_are_held_like_any_other(method):
    """Only page loads (GET) are answered at once with the waiting page; a form's POST is held."""
    from starlette.testclient import TestClient

    state = {"ready_after": time.monotonic() + 0.3}

    def upstream(request):
        if time.monotonic() < state["ready_after"]:
            raise httpx.ConnectError("refused", request=request)
        return _answer(200, {"ok": 1})()

    app = _holding_gateway(upstream, hold_requests=1, hold_s=10)
    with TestClient(app) as client:
        answer = client.request(method, "/ui/generate", headers={"Accept": "text/html"})
    assert answer.status_code == 200
    assert app.state.metrics.outcomes.labels("held_then_forwarded")._value.get() == 1


def test_gateway_settings_cannot_change_under_running_requests():
    import dataclasses

    from sd21.gateway import GatewaySettings

    settings = GatewaySettings("http://upstream.invalid", request_timeout_s=60)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.hold_s = 30


def test_the_process_passes_on_the_upstreams_date_and_server_headers_alone():
    """`python -m sd21.gateway` adds no Date or Server of its own to a forwarded answer:
    a client would otherwise see two of each."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        return PlainTextResponse("hi", headers={"Server": "sd21-upstream"})

    port = free_port()
    with serving(Starlette(routes=[Route("/hello", hello)])) as upstream:
        process = subprocess.Popen(
            [sys.executable, "-m", "sd21.gateway", "--upstream", upstream, "--host", "127.0.0.1",
             "--port", str(port), "--metrics-port", str(free_port())],
            env=subprocess_env({}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(f"http://127.0.0.1:{port}/health", timeout=30)
            direct = httpx.get(upstream + "/hello", timeout=10)
            forwarded = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=10)
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert forwarded.text == "hi"
    assert forwarded.headers.get_list("server") == direct.headers.get_list("server")
    # One Date, the upstream's (two answers may be a second apart: the count is what matters).
    assert len(forwarded.headers.get_list("date")) == len(direct.headers.get_list("date")) == 1


def test_a_generation_is_waited_for_as_long_as_the_servers_timeout():
    """The gateway's read timeout follows the request timeout: a long generation is not a 504."""
    import asyncio

    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from sd21.gateway import GatewaySettings, create_app

    async def slow(request):
        await asyncio.sleep(1.5)
        return PlainTextResponse("done")

    with serving(Starlette(routes=[Route("/slow", slow)])) as upstream:
        app = create_app(GatewaySettings(upstream, request_timeout_s=10), CollectorRegistry())
        with serving(app) as url:
            answer = httpx.get(url + "/slow", timeout=30)
    assert (answer.status_code, answer.text) == (200, "done")


def test_redirects_go_back_to_the_client():
    """The browser follows them itself, so its address bar and relative links stay right."""
    from starlette.testclient import TestClient

    app = _holding_gateway(lambda request: _answer(307, location="/ui/")())
    with TestClient(app) as client:
        answer = client.get("/ui", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "/ui/"


@pytest.mark.parametrize("only", [{"hold_requests": 4}, {"hold_s": 5.0}])
def test_holding_needs_both_a_count_and_a_time(only):
    """GatewaySettings holds nothing unless both are set: either alone answers 503 at once."""
    from starlette.testclient import TestClient

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    app = _holding_gateway(refused, **only)
    with TestClient(app) as client:
        started = time.monotonic()
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
    assert answer.status_code == 503 and time.monotonic() - started < 0.5
    assert app.state.metrics.outcomes.labels("held_then_forwarded")._value.get() == 0


# --- the gateway's own answers are in the published envelope (issue 21, finding 8) ----------

def test_every_error_type_the_gateway_answers_with_is_published():
    """warming_up, upstream_error, upstream_timeout: in ERROR_TYPES and in the server's
    OpenAPI document, as every other error of the endpoint."""
    from starlette.testclient import TestClient

    from sd21.contract import ERROR_TYPES
    from sd21.server import openapi_document

    failures = {"cold": httpx.ConnectError, "slow": httpx.ReadTimeout, "broken": httpx.RemoteProtocolError}

    def upstream(request):
        raise failures[request.url.path.strip("/")]("failed", request=request)

    app = _holding_gateway(upstream)
    with TestClient(app) as client:
        kinds = {client.get(f"/{name}").json()["error"]["type"] for name in failures}
    assert kinds == {"warming_up", "upstream_timeout", "upstream_error"}
    schema = openapi_document()["components"]["schemas"]["ErrorBody"]["properties"]["type"]
    assert kinds <= set(ERROR_TYPES) and kinds <= set(schema["enum"]), (kinds, ERROR_TYPES)


@pytest.mark.parametrize("method, path, allowed", [
    # /health is the gateway's own for GET; any other method of METHODS is forwarded (the catch-all).
    ("PROPFIND", "/health", {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}),
    ("TRACE", "/v1/images/generations", {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}),
])
def test_the_gateways_own_405_is_the_json_envelope_and_says_what_is_allowed(method, path, allowed):
    """RFC 9110 section 15.5.6: a 405 MUST carry an Allow header listing the target's methods."""
    from starlette.testclient import TestClient

    from sd21.contract import ERROR_TYPES

    app = _holding_gateway(lambda request: _answer(200)())
    with TestClient(app) as client:
        answer = client.request(method, path)
    assert answer.status_code == 405 and answer.headers["content-type"] == "application/json", answer.text
    assert answer.json()["error"]["type"] == "method_not_allowed" in ERROR_TYPES
    assert {name.strip() for name in answer.headers["allow"].split(",")} == allowed


def test_the_gateways_own_404_is_the_json_envelope():
    """A request target no route takes (the asterisk form of OPTIONS, RFC 9112 section 3.2.4)."""
    import socket

    from sd21.gateway import GatewaySettings, create_app

    app = create_app(GatewaySettings("http://127.0.0.1:1", request_timeout_s=60), None)
    with serving(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := raw.recv(65536):
                reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404") and b"content-type: application/json" in head.lower(), reply
    assert json.loads(body)["error"]["type"] == "not_found"
