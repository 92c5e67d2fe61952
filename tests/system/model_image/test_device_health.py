"""A device that fails or hangs takes the replica out at once: /ready and /health turn 503,
everything held is answered 503 with Retry-After, and the server is told to exit.

In-process with a stand-in pipeline (the real cpu pipeline under SD21_CPU_FAULT runs in
tests/system/pods/test_self_healing.py, under the pod spec)."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from sd21.faults import InjectedDeviceError, inject, parse
from sd21.health import DeviceHealth, HealthSettings
from tools.dev.localstack import serving
from sd21.pipeline import GenerationCancelled
from sd21.server import API_PATH, create_app
from sd21.service import GenerationService, ServiceSettings

BODY = {"prompt": "a lighthouse", "steps": 2, "seed": 1, "response_format": "png"}


class StandInPipeline:
    """Succeeds in `seconds` until told to fail (`mode` "error") or hang ("hang")."""

    def __init__(self, seconds: float = 0.05):
        self.seconds, self.mode, self.calls = seconds, "ok", 0
        self.release = threading.Event()

    def generate(self, params, should_stop=None):
        from PIL import Image

        self.calls += 1
        if self.mode == "error":
            raise InjectedDeviceError("NRT execution failed")
        if self.mode == "hang":
            self.release.wait()
            raise RuntimeError("released")
        if self.mode == "slow":
            while not (should_stop and should_stop()):
                time.sleep(0.01)
            raise GenerationCancelled()
        time.sleep(self.seconds)
        return Image.new("RGB", (512, 512))


class Served:
    def __init__(self, health: HealthSettings, queue_size: int = 4, request_timeout_s: float = 60):
        self.pipeline = StandInPipeline()
        self.unhealthy_calls: list[str] = []
        settings = ServiceSettings(queue_size=queue_size, request_timeout_s=request_timeout_s, health=health)
        self.service = GenerationService(settings, pipeline=self.pipeline)
        self.service.on_unhealthy = self.unhealthy_calls.append
        self.service.load_in_background().join(timeout=30)
        assert self.service.warm


@pytest.fixture
def served():
    def make(**health) -> Served:
        made.append(Served(HealthSettings(**{"watchdog_poll_s": 0.05, **health})))
        return made[-1]

    made: list[Served] = []
    yield make
    for item in made:
        item.pipeline.release.set()
        item.service.shutdown()


def post(url: str) -> httpx.Response:
    return httpx.post(url + API_PATH, json=BODY, timeout=30)


def test_consecutive_failures_take_the_replica_out(served):
    s = served(max_consecutive_failures=3)
    with serving(create_app(s.service, with_ui=False)) as url:
        assert post(url).status_code == 200
        s.pipeline.mode = "error"
        first, second = post(url), post(url)
        assert [first.status_code, second.status_code] == [500, 500]  # could be the request: still serving
        assert httpx.get(url + "/ready").status_code == 200 and s.unhealthy_calls == []
        third = post(url)
        assert third.status_code == 503 and third.json()["error"]["type"] == "unhealthy"
        assert third.headers["Retry-After"] == "1" and "3 generations in a row" in third.json()["error"]["message"]
        for probe in ("/ready", "/health"):
            response = httpx.get(url + probe)
            assert response.status_code == 503 and response.json()["error"]["type"] == "unhealthy", probe
        calls = s.pipeline.calls
        later = post(url)
        assert later.status_code == 503 and s.pipeline.calls == calls  # refused without touching the device
    assert len(s.unhealthy_calls) == 1 and "InjectedDeviceError" in s.unhealthy_calls[0]
    metrics = s.service.metrics
    assert metrics.device_healthy._value.get() == 0 and metrics.ready._value.get() == 0
    assert metrics.device_failures._value.get() == 3


def test_a_success_between_failures_resets_the_count(served):
    s = served(max_consecutive_failures=2)
    with serving(create_app(s.service, with_ui=False)) as url:
        for mode in ("error", "ok", "error", "ok", "error"):
            s.pipeline.mode = mode
            assert post(url).status_code == (500 if mode == "error" else 200)
        assert httpx.get(url + "/ready").status_code == 200
        assert s.service.health.consecutive_failures == 1 and s.unhealthy_calls == []


def test_timeouts_are_not_device_failures(served):
    s = Served(HealthSettings(max_consecutive_failures=1, watchdog_min_s=30), request_timeout_s=0.3)
    try:
        s.pipeline.mode = "slow"
        with serving(create_app(s.service, with_ui=False)) as url:
            assert post(url).status_code == 504
            assert httpx.get(url + "/ready").status_code == 200 and s.service.health.healthy
    finally:
        s.service.shutdown()


def test_a_hung_generation_answers_everyone_held_with_503_promptly(served):
    s = served(watchdog_min_s=1.0, watchdog_factor=1.0)
    with serving(create_app(s.service, with_ui=False)) as url:
        s.pipeline.mode = "hang"
        started = time.monotonic()
        with httpx.Client(timeout=30) as client:
            async_results = []

            def call():
                async_results.append(client.post(url + API_PATH, json=BODY))

            threads = [threading.Thread(target=call) for _ in range(3)]  # one running, two queued
            for thread in threads:
                thread.start()
                time.sleep(0.1)
            for thread in threads:
                thread.join(timeout=20)
        elapsed = time.monotonic() - started
        assert [r.status_code for r in async_results] == [503, 503, 503]
        assert all(r.json()["error"]["type"] == "unhealthy" and r.headers["Retry-After"] for r in async_results)
        assert 1.0 <= elapsed < 5, elapsed  # the bound (1 s), then at once
        assert httpx.get(url + "/ready").status_code == 503
    assert len(s.unhealthy_calls) == 1 and "hung" in s.unhealthy_calls[0]
    assert s.service.queued == 0  # the queued ones were cancelled, not left counted


def test_the_hang_bound_follows_the_measured_step_time():
    health = DeviceHealth(HealthSettings(watchdog_factor=10, watchdog_min_s=5), on_unhealthy=lambda reason: None)
    try:
        assert health.bound_for(50) == float("inf")  # nothing measured yet: the startup probe bounds it
        health.succeeded(seconds=4.0, steps=2)  # 2 s per step
        assert health.bound_for(50) == 1000 and health.bound_for(1) == 20
        health.succeeded(seconds=0.02, steps=2)  # one quick image moves the average by a tenth
        assert health.step_seconds == pytest.approx(0.9 * 2.0 + 0.1 * 0.01)
        single = DeviceHealth(HealthSettings(), on_unhealthy=lambda reason: None)
        single.succeeded(seconds=1.5, steps=1)
        assert single.step_seconds == 1.5
        single.stop()
        fast = DeviceHealth(HealthSettings(watchdog_factor=10, watchdog_min_s=5), on_unhealthy=lambda reason: None)
        fast.succeeded(seconds=0.01, steps=10)
        assert fast.bound_for(25) == 5  # the floor
        fast.stop()
    finally:
        health.stop()


def test_unhealthy_is_reported_once():
    calls = []
    health = DeviceHealth(HealthSettings(max_consecutive_failures=1), on_unhealthy=calls.append)
    health.failed(RuntimeError("a"))
    health.failed(RuntimeError("b"))
    health.mark_unhealthy("again")
    assert len(calls) == 1 and "RuntimeError: a" in calls[0] and health.reason == calls[0]


@pytest.mark.parametrize("settings", [dict(max_consecutive_failures=0), dict(watchdog_factor=0.5),
                                      dict(watchdog_min_s=0), dict(watchdog_min_s=-1), dict(watchdog_poll_s=0),
                                      dict(watchdog_poll_s=-0.5), dict(watchdog_poll_s=-2)])
def test_health_settings_are_validated(settings):
    with pytest.raises(ValueError):
        HealthSettings(**settings)


def test_health_settings_are_frozen_and_default_to_what_is_deployed():
    """The server's defaults (make demo, a bare container) are the deployment's defaults."""
    import dataclasses

    from app import default_context
    from stacks.settings import Settings

    deployed = Settings.from_context(default_context())
    defaults = HealthSettings()
    assert (defaults.max_consecutive_failures, defaults.watchdog_factor, defaults.watchdog_min_s) == (
        deployed.endpoint.device_failures_before_restart, deployed.endpoint.hang_factor, deployed.endpoint.hang_minimum_seconds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.watchdog_factor = 2


def test_one_failure_is_not_yet_a_broken_device():
    calls = []
    health = DeviceHealth(HealthSettings(max_consecutive_failures=2), on_unhealthy=calls.append)
    health.failed(RuntimeError("once"))
    assert health.healthy and health.consecutive_failures == 1 and calls == []
    # The watchdog never keeps the process alive: a hung device must not block the exit.
    assert health._watchdog.daemon is True
    health.stop()


def test_the_exit_status_is_the_documented_one():
    from pathlib import Path

    from sd21 import health, server

    readme = (Path(__file__).resolve().parents[3] / "docs" / "operating.md").read_text()
    assert health.EXIT_UNHEALTHY == 8 and "exits with code 8" in readme
    assert "8 the device turned unhealthy" in Path(server.__file__).read_text()


@pytest.mark.parametrize("argv,message", [
    (["--max-consecutive-failures", "0"], "max consecutive failures must be >= 1"),
    (["--watchdog-factor", "0.5"], "watchdog factor must be >= 1"),
    (["--unhealthy-exit-delay-s", "-1"], "unhealthy exit delay"),
])
def test_server_refuses_bad_health_settings(argv, message):
    from sd21.server import parse_args, settings_from_args

    with pytest.raises(SystemExit, match=message):
        settings_from_args(parse_args(["--backend", "cpu", *argv]))


def test_cpu_fault_specs():
    assert parse("error-after:3") == ("error-after", 3) and parse("hang-after:0") == ("hang-after", 0)
    for bad in ("error-after", "error-after:-1", "explode:1", "hang-after:x", ""):
        with pytest.raises(ValueError, match="SD21_CPU_FAULT"):
            parse(bad)


def test_cpu_fault_acts_after_the_nth_generation_and_only_on_cpu():
    calls = []
    parts = {"unet": lambda *t: calls.append("unet") or "noise", "vae_decoder": lambda *t: "image"}
    assert inject("neuron", parts, "vae_decoder", {"SD21_CPU_FAULT": "error-after:0"}) is parts
    assert inject("cpu", parts, "vae_decoder", {}) is parts
    faulty = inject("cpu", parts, "vae_decoder", {"SD21_CPU_FAULT": "error-after:2"})
    for _ in range(2):  # two whole generations pass
        assert faulty["unet"]() == "noise" and faulty["vae_decoder"]() == "image"
    with pytest.raises(InjectedDeviceError):
        faulty["unet"]()
    with pytest.raises(InjectedDeviceError):
        faulty["unet"]()  # and every one after
    assert calls == ["unet", "unet"]


def test_cpu_fault_hang_blocks():
    parts = {"unet": lambda *t: "noise", "vae_decoder": lambda *t: "image"}
    faulty = inject("cpu", parts, "vae_decoder", {"SD21_CPU_FAULT": "hang-after:0"})
    worker = threading.Thread(target=faulty["unet"], daemon=True)
    worker.start()
    worker.join(timeout=0.5)
    assert worker.is_alive()


def test_service_loop_wakes_waiters_from_another_thread():
    """The unhealthy signal crosses from the watchdog thread into the event loop."""
    s = Served(HealthSettings(watchdog_poll_s=0.05))
    try:
        s.pipeline.mode = "hang"

        async def one():
            from sd21.pipeline import GenerationParams
            from sd21.service import Rejected

            task = asyncio.create_task(s.service.generate(GenerationParams(prompt="x", steps=1)))
            await asyncio.sleep(0.2)
            threading.Thread(target=s.service.health.mark_unhealthy, args=("test",)).start()
            with pytest.raises(Rejected) as rejected:
                await asyncio.wait_for(task, timeout=5)
            return rejected.value

        rejection = asyncio.run(one())
        assert rejection.status == 503 and rejection.kind == "unhealthy"
    finally:
        s.pipeline.release.set()
        s.service.shutdown()
