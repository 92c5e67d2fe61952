"""At scale to zero the gateway holds a request while no replica is ready and forwards it
the moment one is; past its bound it answers 503. The gateway and the server run from
their specs; the Service between them has no endpoint until the server is ready."""
from __future__ import annotations

import io
import threading
import time

import httpx
from PIL import Image

from sd21.metric_names import GATEWAY_HELD
from tests.support.pods.cluster import env_of, metrics_url_of, url_of
from tests.support.pods.service import Service

API = "/v1/images/generations"
BODY = {"prompt": "a lighthouse at dusk", "steps": 2, "seed": 7, "response_format": "png"}


def test_a_request_at_zero_is_held_and_answered_once_a_replica_is_ready(serving, gateway_before):
    """The replica is the session's server: what the gateway sees of a replica starting is its
    Service getting a ready endpoint, which happens here only once the request is held."""
    service = Service([])  # scaled to zero: connections are refused
    gateway = gateway_before(service.url)
    assert float(env_of(gateway.spec)["SD21_HOLD_S"]) >= 60  # the spec's bound, not a test value
    answer: dict = {}

    def client() -> None:
        started = time.monotonic()
        answer["response"] = httpx.post(url_of(gateway) + API, json=BODY, timeout=300)
        answer["seconds"] = time.monotonic() - started

    waiting = threading.Thread(target=client)
    waiting.start()
    deadline = time.monotonic() + 30
    while f"{GATEWAY_HELD} 1.0" not in httpx.get(metrics_url_of(gateway)).text:  # the gateway holds it
        assert waiting.is_alive() and time.monotonic() < deadline, answer
        time.sleep(0.05)
    assert waiting.is_alive(), answer  # held, not refused
    started = time.monotonic()
    try:
        service.add(serving)  # a replica joins the Service (ready by its probe)
        waiting.join(timeout=120)
        response = answer["response"]
        assert response.status_code == 200, response.text
        assert Image.open(io.BytesIO(response.content)).size == (512, 512)
        ready_after = time.monotonic() - started
        exported = httpx.get(metrics_url_of(gateway)).text
        (last,) = [float(line.split()[-1]) for line in exported.splitlines()
                   if line.startswith("sd21_gateway_last_cold_start_seconds ")]
        assert abs(last - answer["seconds"]) < 2, (last, answer)  # the cold start the gateway reports
        print(f"\nheld {answer['seconds']:.1f}s until a replica was ready ({ready_after:.1f}s from its joining to "
              f"the answer), then answered 200; the gateway reports a {last:.1f}s cold start")
    finally:
        service.close()


def test_past_its_bound_a_held_request_gets_503_and_people_get_a_page_at_once(gateway_before):
    service = Service([])
    gateway = gateway_before(service.url, extra_env={"SD21_HOLD_S": "2"})  # a short bound for the test
    started = time.monotonic()
    response = httpx.post(url_of(gateway) + API, json=BODY, timeout=60)
    held = time.monotonic() - started
    assert response.status_code == 503 and response.json()["error"]["type"] == "warming_up", response.text
    assert response.headers["Retry-After"] and 2 <= held < 5, held
    started = time.monotonic()
    page = httpx.get(url_of(gateway) + "/ui/", headers={"Accept": "text/html"}, timeout=60)
    assert page.status_code == 503 and "Starting, about" in page.text and time.monotonic() - started < 1
    service.close()
