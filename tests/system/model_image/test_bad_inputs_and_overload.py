"""Bad inputs get 4xx with a reason; overload gets 429 + Retry-After, never 5xx."""
from __future__ import annotations

import concurrent.futures

import httpx
import pytest

API = "/v1/images/generations"

BAD_BODIES = [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt must not be empty"),
    ({"prompt": "x" * 1001}, "prompt"),
    ({"prompt": "cat", "steps": 0}, "steps"),
    ({"prompt": "cat", "steps": 101}, "steps"),
    ({"prompt": "cat", "size": "1024x1024"}, "only 512x512"),
    ({"prompt": "cat", "steps": "ten"}, "steps"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": "cat", "guidance_scale": "high"}, "guidance_scale"),
    ({"prompt": "cat", "seed": -1}, "seed"),
    ({"prompt": "cat", "response_format": "gif"}, "response_format"),
    ({"prompt": "cat", "unknown": 1}, "unknown"),
    ({}, "prompt"),
]


@pytest.mark.parametrize("body,reason", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_json_fields_get_422_with_reason(live_server, body, reason):
    response = httpx.post(live_server.url + API, json=body, timeout=30)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert reason in error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"prompt"'])
def test_malformed_json_gets_422(live_server, raw):
    response = httpx.post(live_server.url + API, content=raw, timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["message"]


def test_server_keeps_serving_after_bad_inputs(live_server):
    for body, _ in BAD_BODIES:
        httpx.post(live_server.url + API, json=body, timeout=30)
    response = httpx.post(live_server.url + API, json={"prompt": "still fine", "steps": 1}, timeout=60)
    assert response.status_code == 200
    assert 'sd21_errors_total{kind="invalid_request"}' in httpx.get(live_server.url + "/metrics").text


def test_overload_sheds_with_429_and_completes_accepted(live_server):
    clients = 10  # queue holds 2 (+1 on the device)
    body = {"prompt": "load", "steps": 2, "seed": 1, "response_format": "png"}

    def call(_):
        with httpx.Client(timeout=120) as client:
            return client.post(live_server.url + API, json=body)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(call, range(clients)))
    codes = sorted(r.status_code for r in responses)
    assert all(code < 500 for code in codes), codes
    assert set(codes) <= {200, 429}, codes
    assert 429 in codes and 200 in codes, codes
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["type"] == "overloaded"
        else:
            assert response.content.startswith(b"\x89PNG")
    metrics = httpx.get(live_server.url + "/metrics").text
    assert 'sd21_errors_total{kind="overloaded"}' in metrics
    assert "sd21_queue_depth 0.0" in metrics and "sd21_inflight_requests 0.0" in metrics
