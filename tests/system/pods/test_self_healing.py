"""A device that fails or hangs, on the real server under its pod spec (SD21_CPU_FAULT on the
cpu backend): how fast the replica leaves the Service, what every client held received,
and that the process exits so the kubelet restarts it. Figures are printed (pytest -s)."""
from __future__ import annotations

import re
import threading
import time

import httpx

from sd21.health import EXIT_UNHEALTHY
from tests.support.pods.cluster import env_of, metrics_url_of, start_server, until_ready, url_of
from tests.support.pods.service import Service

API = "/v1/images/generations"
BODY = {"prompt": "a lighthouse at dusk", "steps": 2, "seed": 7, "response_format": "png"}


class Watch:
    """When the server's /ready first fails and when its process exits, polled every 50 ms."""

    def __init__(self, container, start: float):
        self.container, self.start = container, start
        self.ready_failed_at = self.exited_at = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        url = url_of(self.container) + "/ready"
        while self.exited_at is None:
            if self.container.process.poll() is not None:
                self.exited_at = time.monotonic() - self.start
                return
            if self.ready_failed_at is None:
                try:
                    if httpx.get(url, timeout=1).status_code == 503:
                        self.ready_failed_at = time.monotonic() - self.start
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def exit_delay(container) -> float:
    """The delay the process was given: the spec's, or the test's timing override."""
    return float(container.env()["SD21_UNHEALTHY_EXIT_DELAY_S"])


def assert_one_line_reason(container, reason: str) -> str:
    lines = [line for line in container.log().splitlines() if line.startswith("error: device unhealthy")]
    assert len(lines) == 1 and reason in lines[0], container.log()
    assert "Traceback" not in container.log()
    return lines[0]


def test_a_hung_device_answers_everyone_held_and_exits(inference_pod, staged, adapt):
    """hang-after:1 (the warm-up passes, the first request hangs) with a 3 s floor and a factor
    of 1 instead of the spec's, and a 1 s exit delay (the spec's outlasts the readiness probe: the
    next test's subject), timing values only, to keep the test short; everything else is the pod
    spec's. The factor matters: the warm-up's step is the machine's slowest (first-call work),
    and on a loaded machine 10 x that x 2 steps was a bound of 50-85 s."""
    server = start_server(inference_pod, staged, adapt, extra_env={"SD21_CPU_FAULT": "hang-after:1",
                                                                   "SD21_WATCHDOG_MIN_S": "3",
                                                                   "SD21_WATCHDOG_FACTOR": "1",
                                                                   "SD21_UNHEALTHY_EXIT_DELAY_S": "1"})
    try:
        start = time.monotonic()
        watch = Watch(server, start)
        results: dict[int, tuple[float, httpx.Response]] = {}

        def client(index: int) -> None:
            response = httpx.post(url_of(server) + API, json=BODY, timeout=60)
            results[index] = (time.monotonic() - start, response)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]  # 1 running, 2 queued
        for thread in threads:
            thread.start()
            time.sleep(0.2)
        for thread in threads:
            thread.join(timeout=60)
        code = server.wait(timeout=60)
        watch.join(timeout=5)
        assert code == EXIT_UNHEALTHY
        reason = assert_one_line_reason(server, "the device is hung")
        # The bound follows the step time measured at warm-up, never below the 3 s floor:
        # factor x seconds per step x the request's steps, as the reason itself reports them.
        found = re.search(r"over the ([0-9.]+)s bound \(([0-9.]+) x ([0-9.]+)s per step measured here, "
                          r"at least ([0-9.]+)s\)", reason)
        assert found, reason
        bound, factor, step, floor = map(float, found.groups())
        assert (factor, floor) == (1, 3), reason
        assert abs(bound - max(floor, factor * step * BODY["steps"])) <= 0.1, reason
        assert 3 <= bound < 30, reason
        for index, (seconds, response) in sorted(results.items()):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["type"] == "unhealthy" and response.headers["Retry-After"] == "1"
            assert bound - 0.2 <= seconds < bound + 2, (index, seconds)  # the bound, then at once
        assert watch.ready_failed_at is not None and bound - 0.2 <= watch.ready_failed_at < bound + 2
        assert watch.exited_at < watch.ready_failed_at + exit_delay(server) + 3
        print(f"\nhang: /ready failed after {watch.ready_failed_at:.1f}s (bound {bound:.0f}s), process exited "
              f"{EXIT_UNHEALTHY} after {watch.exited_at:.1f}s; in flight and queued clients: "
              + ", ".join(f"{r.status_code} at {s:.1f}s" for s, r in (results[i] for i in sorted(results))))
    finally:
        server.kill()


def test_a_failing_device_leaves_the_service_and_traffic_moves_to_the_healthy_replica(
        inference_pod, staged, adapt, gateway_before, serving):
    """error-after:3: the warm-up and two requests pass, then every generation raises. The
    healthy replica is the session's (only sent requests)."""
    failing = start_server(inference_pod, staged, adapt, extra_env={"SD21_CPU_FAULT": "error-after:3"}, wait=False)
    healthy = serving
    service = Service([failing, healthy])
    try:
        gateway = gateway_before(service.url)  # while the failing replica starts
        until_ready(failing)
        service.wait_ready(2, timeout=30)
        threshold = int(env_of(failing.spec)["SD21_MAX_CONSECUTIVE_FAILURES"])
        start = time.monotonic()
        watch = Watch(failing, start)
        outcomes: list[tuple[float, int, str]] = []

        def steady_client() -> None:  # two of them: the gateway keeps a connection to each replica
            with httpx.Client(timeout=60) as client:
                while time.monotonic() - start < 60:
                    response = client.post(url_of(gateway) + API, json=BODY)
                    kind = response.json()["error"]["type"] if response.status_code != 200 else "image"
                    outcomes.append((time.monotonic() - start, response.status_code, kind))
                    if watch.exited_at is not None and [o[1] for o in outcomes[-6:]] == [200] * 6:
                        return

        clients = [threading.Thread(target=steady_client) for _ in range(2)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=90)
        outcomes.sort()
        watch.join(timeout=5)
        assert failing.process.wait(timeout=30) == EXIT_UNHEALTHY
        assert_one_line_reason(failing, f"{threshold} generations in a row failed")
        left = [t - start for t, index, ready in service.events if index == 0 and not ready]
        assert left, "the failing replica never left the Service"
        statuses = [status for _, status, _ in outcomes]
        # 500s while it could still be the request (threshold - 1); then the replica refuses
        # with 503 + X-SD21-Refused and the gateway sends the request again, to the other one,
        # until the endpoint is gone: never a refused connection (the gateway's 503 "cold").
        assert statuses.count(500) == threshold - 1, outcomes
        assert {kind for _, status, kind in outcomes if status == 503} <= {"unhealthy"}, outcomes
        metrics = httpx.get(metrics_url_of(gateway)).text
        retried = float(re.search(r'sd21_gateway_outcomes_total\{outcome="retried_elsewhere"\} (\S+)', metrics)[1])
        assert retried >= 1, metrics
        after_leaving = [status for t, status, _ in outcomes if t > left[0] + 0.5]
        assert after_leaving and set(after_leaving) == {200}, outcomes
        assert watch.exited_at > left[0], "it must keep answering 503 until it is out of the Service"
        period = failing.spec["readinessProbe"]["periodSeconds"]
        failures = failing.spec["readinessProbe"]["failureThreshold"]
        assert left[0] - watch.ready_failed_at <= period * failures + 1
        refused = sum(1 for _, status, _ in outcomes if status != 200)
        print(f"\nerror: /ready failed after {watch.ready_failed_at:.1f}s, out of the Service after {left[0]:.1f}s "
              f"(probe {period}s x {failures}), process exited {EXIT_UNHEALTHY} after {watch.exited_at:.1f}s; "
              f"{len(outcomes)} requests through the gateway: {statuses.count(200)} images, "
              f"{statuses.count(500)} x 500, {statuses.count(503)} x 503 unhealthy ({refused} not served); "
              f"the gateway sent {retried:.0f} refused requests again")
    finally:
        service.close()
        failing.kill()
