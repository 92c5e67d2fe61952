"""SIGTERM with requests in flight: /ready fails at once, all of them complete (or, past the
grace, are told 503 draining), then exit 0."""
from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import sys
import time

import httpx

from tests.support.sd21_testlib import free_port, subprocess_env, wait_for


def start_server(s3_env, staged_dir, artifact_version, grace_s: float):
    port = free_port()
    env = subprocess_env(s3_env) | {"SD21_BACKEND": "cpu", "SD21_MODEL_DIR": str(staged_dir),
                                    "SD21_MODEL_VERSION": artifact_version, "SD21_PORT": str(port),
                                    "SD21_HOST": "127.0.0.1", "SD21_QUEUE_SIZE": "4",
                                    "SD21_DRAIN_GRACE_S": str(grace_s), "SD21_UI": "0"}
    process = subprocess.Popen([sys.executable, "-m", "sd21.server"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}"


def wait_in_flight(url: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while f"sd21_inflight_requests {count}.0" not in httpx.get(url + "/metrics").text:
        assert time.monotonic() < deadline, "requests never got in flight"
        time.sleep(0.02)


def post_in_flight(pool, url: str, body: dict, count: int) -> list:
    """`count` generations sent at once; returns once the server has them all in flight."""
    futures = [pool.submit(httpx.post, url + "/v1/images/generations", json=body, timeout=120) for _ in range(count)]
    wait_in_flight(url, count)
    return futures


def test_sigterm_drains_in_flight_requests(s3_env, staged_dir, artifact_version):
    process, url = start_server(s3_env, staged_dir, artifact_version, grace_s=60)
    try:
        wait_for(url + "/ready", timeout=90)
        body = {"prompt": "drain", "steps": 4, "seed": 5, "response_format": "png"}
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = post_in_flight(pool, url, body, 3)
            process.send_signal(signal.SIGTERM)
            ready = httpx.get(url + "/ready", timeout=5)
            assert ready.status_code == 503 and ready.json()["error"]["type"] == "draining"
            refused = httpx.post(url + "/v1/images/generations", json=body, timeout=5)
            assert refused.status_code == 503 and "Retry-After" in refused.headers
            results = [future.result() for future in futures]
        assert [r.status_code for r in results] == [200, 200, 200]
        assert all(r.content.startswith(b"\x89PNG") for r in results)
        assert process.wait(timeout=30) == 0
        assert "drained; exiting" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_work_that_cannot_finish_within_the_grace_is_told_503_draining_never_500(s3_env, staged_dir,
                                                                              artifact_version):
    """Four 100-step requests held, a 1 s grace: what cannot finish gets 503 draining with
    Retry-After in the envelope (the client retries elsewhere), not uvicorn's bare 500."""
    process, url = start_server(s3_env, staged_dir, artifact_version, grace_s=1)
    try:
        wait_for(url + "/ready", timeout=90)
        body = {"prompt": "drain", "steps": 100, "seed": 5, "response_format": "png"}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = post_in_flight(pool, url, body, 4)
            process.send_signal(signal.SIGTERM)
            results = [future.result() for future in futures]
        codes = [r.status_code for r in results]
        assert set(codes) <= {200, 503} and 503 in codes, codes
        for refused in (r for r in results if r.status_code == 503):
            assert refused.headers["content-type"] == "application/json", refused.text
            assert refused.json()["error"]["type"] == "draining" and refused.headers["Retry-After"] == "1"
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
