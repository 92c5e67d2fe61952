"""GenerationService in process, with a stand-in device: what a request is told while the
model loads, fails to load, drains, times out or fails; what the metrics say afterwards;
where the model is found; and the cold start read from the stage initContainer's report."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from sd21.pipeline import GenerationCancelled, GenerationParams
from sd21.service import GenerationService, Rejected, ServiceSettings, resolve_model_dir

PARAMS = GenerationParams(prompt="x", steps=1)


class Device:
    """Returns "image" after `seconds`, or waits for `release`, or raises `error`."""

    def __init__(self, seconds: float = 0.0):
        self.seconds, self.error, self.calls, self.ignores_stop = seconds, None, 0, False
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def generate(self, params, should_stop=None):
        if params.prompt == "warm up":
            time.sleep(self.seconds)
            return "warm"
        self.calls += 1
        self.started.set()
        while not self.release.wait(0.01):
            if should_stop and should_stop() and not self.ignores_stop:
                raise GenerationCancelled()
        if self.error is not None:
            raise self.error
        time.sleep(self.seconds)
        return "image"


@pytest.fixture
def make_service():
    made: list[GenerationService] = []

    def make(device: Device | None = None, load: bool = True, **settings) -> GenerationService:
        service = GenerationService(ServiceSettings(**settings), pipeline=device or Device())
        made.append(service)
        if load:
            service.load_in_background().join(10)
        return service

    yield make
    for service in made:
        service.shutdown()


def refusal(service: GenerationService) -> Rejected:
    with pytest.raises(Rejected) as refused:
        asyncio.run(service.generate(PARAMS))
    return refused.value


def errors(service: GenerationService, kind: str) -> float:
    return service.metrics.errors.labels(kind)._value.get()


async def occupy(service: GenerationService, device: Device, queued: int = 0):
    """One request on the (held) device, then `queued` more waiting behind it."""
    running = asyncio.ensure_future(service.generate(PARAMS))
    while not device.started.is_set():
        await asyncio.sleep(0.01)
    waiting = [asyncio.ensure_future(service.generate(PARAMS)) for _ in range(queued)]
    await asyncio.sleep(0.05)
    return running, waiting


def test_while_the_model_loads_requests_are_told_so_and_may_come_back_in_5_s(make_service):
    service = make_service(load=False)
    assert not service.is_ready and service.metrics.ready._value.get() == 0
    refused = refusal(service)
    assert (refused.status, refused.kind, refused.message, refused.retry_after) == (
        503, "not_ready", "model is loading", 5)
    assert errors(service, "not_ready") == 1 and service.metrics.requests._value.get() == 1
    service.load_in_background().join(10)
    assert service.is_ready and service.metrics.ready._value.get() == 1
    assert asyncio.run(service.generate(PARAMS)) == "image"


def test_a_model_that_fails_to_load_says_why_and_stops_the_server_once(make_service, tmp_path):
    failures = []
    service = GenerationService(ServiceSettings(model_dir=tmp_path))  # nothing staged there
    service.on_load_failure = lambda: failures.append(1)
    service.load_in_background().join(10)
    try:
        assert failures == [1] and not service.warm
        refused = refusal(service)
        assert refused.status == 503 and refused.kind == "not_ready"
        assert refused.message.startswith("model failed to load: FileNotFoundError: no staged model")
    finally:
        service.shutdown()


def test_a_draining_service_finishes_what_it_holds_and_refuses_the_rest(make_service):
    device = Device(seconds=0.3)
    service = make_service(device)
    device.release.clear()

    async def scenario():
        running, (queued,) = await occupy(service, device, queued=1)
        assert not service.wait_idle(0.05)  # busy
        service.start_drain()
        assert not service.is_ready and service.metrics.ready._value.get() == 0
        with pytest.raises(Rejected) as refused:
            await service.generate(PARAMS)
        device.release.set()
        first = await running
        assert not service.wait_idle(0), "idle while a request still waits its turn"
        return [first, await queued], refused.value

    images, refused = asyncio.run(scenario())
    assert images == ["image", "image"]
    assert (refused.status, refused.kind, refused.retry_after) == (503, "draining", 1)
    assert service.wait_idle(1)
    assert service.metrics.inflight._value.get() == 0 and service.metrics.queue_depth._value.get() == 0


def test_a_drain_refuses_at_once_the_queued_work_that_cannot_finish_within_the_grace(make_service):
    """Warm-up measures 0.1 s a step; 10-step requests take 1 s each. With a 2.5 s grace the one
    running and the first queued fit (2 s); the two behind them are told 503 draining now,
    instead of being cut off at the end of the grace."""
    device = Device(seconds=0.2)
    service = make_service(device, warmup_steps=2, drain_grace_s=2.5, queue_size=4)
    device.seconds = 0.0
    device.release.clear()
    ten_steps = GenerationParams(prompt="x", steps=10)

    async def scenario():
        running = asyncio.ensure_future(service.generate(ten_steps))
        while not device.started.is_set():
            await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(service.generate(ten_steps)) for _ in range(3)]
        await asyncio.sleep(0.05)
        service.start_drain()
        refused = await asyncio.gather(*queued[1:], return_exceptions=True)
        device.release.set()
        return await running, await queued[0], refused

    first, second, refused = asyncio.run(scenario())
    assert first == second == "image"
    assert [(r.status, r.kind, r.retry_after) for r in refused] == [(503, "draining", 1)] * 2
    assert device.calls == 2 and errors(service, "draining") == 2
    assert service.wait_idle(1) and service.metrics.inflight._value.get() == 0


def test_what_is_still_held_when_the_grace_ends_is_answered_503_draining_not_left_to_a_500(make_service):
    """The server refuses what is left at the end of the grace before it exits: otherwise
    uvicorn cancels those requests at shutdown and writes a bare 500 (h11_impl send_500_response)."""
    device = Device()
    service = make_service(device, queue_size=2)
    device.release.clear()  # the running generation outlasts the grace; should_stop ends it

    async def scenario():
        running, waiting = await occupy(service, device, queued=1)
        service.start_drain()
        service.refuse_held()
        return await asyncio.gather(running, *waiting, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert [(a.status, a.kind, a.retry_after) for a in answers] == [(503, "draining", 1)] * 2
    assert device.calls == 1  # the queued one never reached the device
    assert service.wait_idle(2) and service.health.healthy
    assert errors(service, "draining") == 2 and errors(service, "unhealthy") == 0


def test_the_drain_estimate_is_the_held_steps_at_the_measured_step_time(make_service):
    device = Device(seconds=0.2)
    service = make_service(device, warmup_steps=2, queue_size=4, drain_grace_s=30)
    assert 0.09 <= service.step_seconds <= 0.15
    assert service.full_queue_drain_s(steps=25) == pytest.approx(5 * 25 * service.step_seconds)


def test_what_waits_longer_than_the_timeout_is_a_504_and_not_a_device_failure(make_service):
    device = Device()
    service = make_service(device, request_timeout_s=0.2)
    device.release.clear()  # the device never finishes by itself: should_stop ends it
    refused = refusal(service)
    assert (refused.status, refused.kind) == (504, "timeout")
    assert refused.message == "generation did not finish within 0.2s"
    assert errors(service, "timeout") == 1 and service.metrics.device_failures._value.get() == 0
    assert service.health.healthy and service.wait_idle(1)


def test_a_request_still_queued_at_its_deadline_never_reaches_the_device(make_service):
    device = Device()
    service = make_service(device, request_timeout_s=0.3, queue_size=2)
    device.release.clear()
    device.ignores_stop = True  # the first generation runs past the second's deadline
    threading.Timer(0.8, device.release.set).start()

    async def scenario():
        first, queued = await occupy(service, device, queued=1)
        return await asyncio.gather(first, *queued, return_exceptions=True)

    first, second = asyncio.run(scenario())
    assert first == "image" and (second.status, second.kind) == (504, "timeout")
    assert device.calls == 1  # the second timed out in the queue
    assert service.wait_idle(1)


def test_a_failed_generation_is_a_500_naming_the_error_and_counted(make_service):
    device = Device()
    service = make_service(device)
    device.error = ValueError("bad tensor")
    refused = refusal(service)
    assert (refused.status, refused.kind, refused.message) == (500, "internal", "generation failed: ValueError")
    assert errors(service, "internal") == 1 and service.metrics.device_failures._value.get() == 1
    assert service.health.healthy  # one failure is not yet a broken device
    device.error = None
    assert asyncio.run(service.generate(PARAMS)) == "image"
    assert service.health.consecutive_failures == 0


def test_the_figures_of_a_served_request(make_service):
    device = Device(seconds=0.1)
    service = make_service(device)
    metrics = service.metrics
    assert asyncio.run(service.generate(PARAMS)) == "image"
    assert metrics.requests._value.get() == 1 and metrics.images._value.get() == 1
    busy = metrics.device_busy._value.get()
    assert 0.1 <= busy < 1
    generation = {s.name: s.value for s in metrics.generation.collect()[0].samples}
    latency = {s.name: s.value for s in metrics.latency.collect()[0].samples}
    assert generation["sd21_generation_seconds_count"] == 1 and generation["sd21_generation_seconds_sum"] == busy
    assert latency["sd21_request_latency_seconds_count"] == 1
    assert busy <= latency["sd21_request_latency_seconds_sum"] < 1
    assert metrics.inflight._value.get() == 0 and metrics.queue_depth._value.get() == 0
    assert metrics.device_healthy._value.get() == 1 and metrics.ready._value.get() == 1
    # The hang watchdog's yardstick (0.05 s a step from the 2-step warm-up) moved a tenth of
    # the way towards this generation's 0.1 s a step.
    assert 0.05 <= service.health.step_seconds < 0.1


def test_depth_and_inflight_count_what_waits_and_what_runs(make_service):
    device = Device()
    service = make_service(device, queue_size=3)
    device.release.clear()

    async def scenario():
        running, queued = await occupy(service, device, queued=3)
        seen = (service.metrics.queue_depth._value.get(), service.metrics.inflight._value.get(),
                service.queued, service.running)
        device.release.set()
        await asyncio.gather(running, *queued)
        return seen

    assert asyncio.run(scenario()) == (3, 4, 3, 1)
    assert service.metrics.queue_depth._value.get() == 0 and service.metrics.inflight._value.get() == 0


def test_retry_after_is_the_work_ahead_at_the_measured_pace(make_service):
    device = Device()
    service = make_service(device, queue_size=2)
    device.release.clear()

    async def scenario():
        running, waiting = await occupy(service, device, queued=2)
        service._mean_seconds = 2.5  # the pace measured so far (warm-up, then each generation)
        with pytest.raises(Rejected) as refused:
            await service.generate(PARAMS)
        device.release.set()
        await asyncio.gather(running, *waiting)
        return refused.value

    refused = asyncio.run(scenario())
    # Three ahead (one running, two queued) at 2.5 s each, rounded up.
    assert refused.status == 429 and refused.retry_after == 8
    idle = make_service(Device())
    assert idle.retry_after() == 1  # nothing ahead: at least 1 s


def test_the_pace_follows_recent_generations(make_service):
    device = Device(seconds=0.5)
    service = make_service(device)
    service._mean_seconds = 2.0
    asyncio.run(service.generate(PARAMS))  # 0.5 s: the pace moves a fifth of the way there
    assert 1.7 <= service._mean_seconds < 1.75


def test_a_client_that_leaves_while_queued_frees_its_place(make_service):
    device = Device()
    service = make_service(device, queue_size=1)
    device.release.clear()

    async def scenario():
        running, (queued,) = await occupy(service, device, queued=1)
        queued.cancel()  # the client hung up
        await asyncio.sleep(0.05)
        depth, idle = service.queued, service.wait_idle(0)
        device.release.set()
        await running
        return depth, idle

    assert asyncio.run(scenario()) == (0, False)  # one still on the device: not idle
    assert device.calls == 1 and service.wait_idle(1)


def test_the_model_is_found_by_version_then_current_then_the_directory(tmp_path):
    for directory in (tmp_path / "v2", tmp_path / "current", tmp_path):
        directory.mkdir(exist_ok=True)
        (directory / "manifest.json").write_text("{}")
    assert resolve_model_dir(tmp_path, "v2") == tmp_path / "v2"
    assert resolve_model_dir(tmp_path, None) == tmp_path / "current"
    assert resolve_model_dir(tmp_path, "v3") == tmp_path / "current"  # not staged: what current points at
    (tmp_path / "current" / "manifest.json").unlink()
    assert resolve_model_dir(tmp_path, None) == tmp_path
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"no staged model \\(manifest.json\\) under {tmp_path} for version v3"):
        resolve_model_dir(tmp_path, "v3")
    with pytest.raises(FileNotFoundError, match=f"under {tmp_path}$"):
        resolve_model_dir(tmp_path, None)


def cold_start(service: GenerationService) -> dict[str, float]:
    return {sample.labels["phase"]: sample.value for sample in service.metrics.cold_start.collect()[0].samples}


def test_the_cold_start_includes_the_stage_initcontainer_report(make_service, tmp_path):
    """The report is written by sd21-stage itself (its write_report), not hand-made here."""
    from sd21.stage import write_report

    started_at = time.time() - 20
    write_report(tmp_path, "v1", started_at=started_at, seconds=12.5, size=123456)
    service = make_service(Device(seconds=0.2), model_dir=tmp_path)
    phases = cold_start(service)
    assert phases["stage"] == 12.5
    assert 20 <= phases["stage_to_ready"] < 25
    assert 0.2 <= phases["warmup"] < 1 and 0 <= phases["load"] < 0.5
    assert service.metrics.staged_bytes._value.get() == 123456


def test_the_stage_phase_counts_the_initcontainer_attempts_that_failed_before(make_service, tmp_path):
    """sd21-stage's failed attempts (kubelet restarts, same volume) are part of this pod's cold start."""
    from sd21.stage import write_report

    first_try = time.time() - 60
    write_report(tmp_path, "v1", started_at=first_try, seconds=1.0, size=0, failed=5)
    write_report(tmp_path, "v1", started_at=time.time() - 20, seconds=12.5, size=123456)
    phases = cold_start(make_service(Device(), model_dir=tmp_path))
    assert phases["stage"] == 12.5 and 60 <= phases["stage_to_ready"] < 65


def test_a_report_of_a_failed_stage_is_not_a_stage_phase(make_service, tmp_path):
    from sd21.stage import write_report

    write_report(tmp_path, "v1", started_at=time.time() - 20, seconds=3.0, size=0, failed=4)
    service = make_service(Device(), model_dir=tmp_path)
    assert set(cold_start(service)) == {"load", "warmup"}


@pytest.mark.parametrize("report", [None, "not json", json.dumps({}),
                                    json.dumps({"seconds": "x", "started_at": 1, "bytes": 1})])
def test_without_a_usable_stage_report_only_the_phases_measured_here_are_reported(make_service, tmp_path, report):
    if report is not None:
        from sd21.stage import STAGE_REPORT

        (tmp_path / STAGE_REPORT).write_text(report)
    service = make_service(Device(), model_dir=tmp_path)
    assert service.is_ready
    assert set(cold_start(service)) == {"load", "warmup"}
    assert service.metrics.staged_bytes._value.get() == 0


def test_a_device_that_turns_unhealthy_answers_the_queue_and_refuses_new_work(make_service):
    device = Device()
    service = make_service(device, queue_size=2)
    told = []
    service.on_unhealthy = told.append
    device.release.clear()

    async def scenario():
        running, queued = await occupy(service, device, queued=1)
        service.health.mark_unhealthy("test: the device is gone")
        results = await asyncio.gather(running, *queued, return_exceptions=True)
        device.release.set()
        return results

    results = asyncio.run(scenario())
    assert [(r.status, r.kind, r.retry_after) for r in results] == [(503, "unhealthy", 1)] * 2
    assert "test: the device is gone" in results[0].message
    assert told == ["test: the device is gone"]
    assert service.metrics.device_healthy._value.get() == 0 and service.metrics.ready._value.get() == 0
    later = refusal(service)
    assert later.kind == "unhealthy" and device.calls == 1
    assert errors(service, "unhealthy") == 3


def test_service_settings_cannot_change_under_running_requests():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        ServiceSettings().queue_size = 100


def test_a_device_shut_down_under_a_request_refuses_it_and_frees_its_place(make_service):
    """The device turned unhealthy between admission and hand-over (its executor is shut):
    503 unhealthy, and the place in the queue is given back."""
    service = make_service(Device())
    service._executor.shutdown(wait=False)
    refused = refusal(service)
    assert (refused.status, refused.kind) == (503, "unhealthy")
    assert service.queued == 0 and service.wait_idle(0) and errors(service, "unhealthy") == 1


def test_shutting_down_never_waits_for_a_hung_device(make_service):
    device = Device()
    service = make_service(device)
    device.release.clear()  # the generation below never finishes by itself

    async def scenario():
        running, _ = await occupy(service, device)
        threading.Timer(2, device.release.set).start()  # so that a shutdown that waits still ends
        started = time.monotonic()
        service.shutdown()
        took = time.monotonic() - started
        await running
        return took

    assert asyncio.run(scenario()) < 0.5
