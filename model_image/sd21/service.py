"""Admission, queueing, one-at-a-time device execution, metrics and drain.

The event loop admits requests into a bounded queue; a single worker thread
runs generations on the device. Overflow is refused at once (HTTP 429) so the
queue never grows past what can finish within the request timeout.
"""
from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .env import progress
from .health import DeviceHealth, HealthSettings
from .contract import DEFAULT_STEPS, ServerEnv
from .metric_names import INFLIGHT_REQUESTS


class _NoTimeLeft(Exception):
    """A queued request whose turn comes too late to finish within the drain grace."""


class Rejected(Exception):
    """Request refused before it reached the device."""

    def __init__(self, status: int, kind: str, message: str, retry_after: Optional[int] = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.retry_after = status, kind, message, retry_after


@dataclass(frozen=True)
class ServiceSettings:
    """What sd21-serve's flags and environment give; the defaults are the environment's
    (sd21.contract.ServerEnv), but for the backend: in-process users are tests and tools."""
    backend: str = "cpu"
    model_dir: Path = Path(ServerEnv.model_dir)
    model_version: Optional[str] = None
    queue_size: int = ServerEnv.queue_size
    request_timeout_s: float = ServerEnv.request_timeout_s
    drain_grace_s: float = ServerEnv.drain_grace_s
    warmup_steps: int = 2
    health: HealthSettings = field(default_factory=HealthSettings)
    served_model: str = ServerEnv.model_name  # what OpenAI-style clients name as `model`


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("sd21_queue_depth", "Requests waiting for the device", registry=r)
        self.inflight = Gauge(INFLIGHT_REQUESTS, "Requests admitted and not finished", registry=r)
        self.ready = Gauge("sd21_ready", "1 when the model is loaded, warmed and not draining", registry=r)
        # Bucket edges only set how finely percentiles resolve (CloudWatch gets them as
        # values with counts); any ascending edges behave alike, so they are not mutated.
        self.latency = Histogram(
            "sd21_request_latency_seconds", "Admission to response, accepted requests", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120),  # pragma: no mutate
        )
        self.generation = Histogram(
            "sd21_generation_seconds", "Device time per image", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),  # pragma: no mutate
        )
        self.device_busy = Counter("sd21_device_busy_seconds", "Seconds the device spent generating", registry=r)
        self.requests = Counter("sd21_requests", "Generation requests that passed validation", registry=r)
        self.images = Counter("sd21_images", "Images generated", registry=r)
        self.errors = Counter("sd21_errors", "Failed or refused requests by kind", ["kind"], registry=r)
        self.device_failures = Counter("sd21_device_failures", "Generations that raised on the device", registry=r)
        self.device_healthy = Gauge("sd21_device_healthy", "0 once the device is judged broken or hung", registry=r)
        self.device_healthy.set(1)
        # This replica's cold start, phase by phase (stage: from the stage initContainer's report).
        self.cold_start = Gauge("sd21_cold_start_seconds", "Seconds each start-up phase took in this replica",
                                ["phase"], registry=r)
        self.staged_bytes = Gauge("sd21_staged_bytes", "Bytes the stage initContainer downloaded", registry=r)


def resolve_model_dir(model_dir: Path, version: Optional[str]) -> Path:
    """<dir>/<version> when the version is known, else <dir>/current, else <dir> itself."""
    for candidate in ((model_dir / version) if version else None, model_dir / "current", model_dir):
        if candidate is not None and (candidate / "manifest.json").is_file():
            return candidate
    raise FileNotFoundError(f"no staged model (manifest.json) under {model_dir}"
                            + (f" for version {version}" if version else ""))


class GenerationService:
    def __init__(self, settings: ServiceSettings, pipeline=None):
        self.settings = settings
        self.metrics = Metrics()
        self.pipeline = pipeline
        self.load_error: Optional[str] = None
        self.warm = False
        self.draining = False
        self.queued = 0
        self.running = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._mean_seconds = 1.0
        # Called once if loading fails; the server exits so the kubelet restarts it.
        self.on_load_failure: Optional[Callable[[], None]] = None
        # Called once when the device turns unhealthy (after what the service held was
        # answered); the server exits non-zero so the kubelet restarts the container.
        self.on_unhealthy: Optional[Callable[[str], None]] = None
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = set()
        # Admitted requests not yet on the device, in order: token -> (executor job, steps).
        self._pending: dict[object, tuple[Optional[Future], int]] = {}
        self._on_device: Optional[tuple[float, int]] = None  # (started, steps) of the running one
        self._drain_deadline = math.inf
        self._refusing_held = False  # the drain grace is over: what is held is answered 503
        self.health = DeviceHealth(settings.health, self._became_unhealthy)

    # -- lifecycle ---------------------------------------------------------
    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self._load, name="model-load", daemon=True)
        thread.start()
        return thread

    def _load(self) -> None:
        from .pipeline import GenerationParams, TracedPipeline

        try:
            started = time.monotonic()
            if self.pipeline is None:
                directory = resolve_model_dir(self.settings.model_dir, self.settings.model_version)
                progress(f"loading model from {directory} on {self.settings.backend}")
                self.pipeline = TracedPipeline(directory, self.settings.backend)
            loaded = time.monotonic()
            self.pipeline.generate(GenerationParams(prompt="warm up", steps=self.settings.warmup_steps))
            self._mean_seconds = time.monotonic() - loaded
            self.health.succeeded(self._mean_seconds, self.settings.warmup_steps)  # the watchdog's yardstick
            self._report_cold_start(load_s=loaded - started, warmup_s=self._mean_seconds)
            self.warm = True
            self._update_ready()
            progress(f"model warm in {self._mean_seconds:.2f}s; ready")
            self._check_drain_grace()
        except Exception as error:  # noqa: BLE001 - reported by /ready, logged once
            self.load_error = f"{type(error).__name__}: {error}"
            progress(f"model load failed: {self.load_error}")
            if self.on_load_failure is not None:
                self.on_load_failure()

    def _report_cold_start(self, load_s: float, warmup_s: float) -> None:
        from .stage import STAGE_REPORT

        phases = {"load": load_s, "warmup": warmup_s}
        try:
            report = json.loads((self.settings.model_dir / STAGE_REPORT).read_text())
            if report.get("failed"):
                raise ValueError("the last stage attempt failed")  # its time is no stage phase
            phases["stage"] = float(report["seconds"])
            # From the first attempt: the initContainer's failed tries are part of this start.
            phases["stage_to_ready"] = time.time() - float(report.get("first_started_at") or report["started_at"])
            self.metrics.staged_bytes.set(int(report["bytes"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # not staged by the initContainer (tests, the demo): the phases measured here only
        for phase, seconds in phases.items():
            self.metrics.cold_start.labels(phase).set(round(seconds, 3))
        progress("cold start: " + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in phases.items()))

    @property
    def is_ready(self) -> bool:
        return self.warm and not self.draining and self.health.healthy

    def _update_ready(self) -> None:
        self.metrics.ready.set(1 if self.is_ready else 0)

    # -- drain ---------------------------------------------------------------
    @property
    def step_seconds(self) -> float:
        """Measured seconds per denoising step (the watchdog's yardstick); 1 s until measured."""
        return self.health.step_seconds or 1.0

    def full_queue_drain_s(self, steps: int = DEFAULT_STEPS) -> float:
        """Seconds a full queue and the running request take at `steps` each."""
        return (self.settings.queue_size + 1) * steps * self.step_seconds

    def _check_drain_grace(self) -> None:
        needed, grace = self.full_queue_drain_s(), self.settings.drain_grace_s
        if needed > grace:
            progress(f"warning: a full queue ({self.settings.queue_size} + 1 at {DEFAULT_STEPS} steps, "
                     f"{self.step_seconds:.3f}s a step) needs about {needed:.0f}s to drain, more than the "
                     f"{grace:g}s grace: at SIGTERM what cannot finish is refused with 503 draining")

    def start_drain(self) -> None:
        self.draining = True
        self._update_ready()
        self._drain_deadline = time.monotonic() + self.settings.drain_grace_s
        work, refused = self._refuse_what_cannot_finish()
        progress(f"draining: {self.queued} queued, {self.running} running, about {work:.0f}s of work for a "
                 f"grace of {self.settings.drain_grace_s:g}s" + (f"; {refused} refused now" if refused else ""))

    def _refuse_what_cannot_finish(self) -> tuple[float, int]:
        """Queued requests that would end past the grace never start: they are told 503 draining
        now (their clients retry elsewhere at once) instead of being cut off at the end."""
        with self._lock:
            ahead = self._running_left()
            pending = list(self._pending.values())
        refused = 0
        for job, steps in pending:
            ahead += steps * self.step_seconds
            if ahead > self.settings.drain_grace_s and job is not None and job.cancel():
                refused += 1
        return ahead, refused

    def _running_left(self) -> float:
        if self._on_device is None:
            return 0.0
        started, steps = self._on_device
        return max(0.0, steps * self.step_seconds - (time.monotonic() - started))

    def refuse_held(self) -> None:
        """The drain grace is over: answer everything held with 503 draining before the server
        exits. Otherwise uvicorn cancels the requests at shutdown and its h11_impl writes a
        bare text/plain 500 (RequestResponseCycle.run_asgi -> send_500_response). Queued
        requests never start; the running one stops at its next step (should_stop)."""
        self._refusing_held = True
        with self._lock:
            jobs = [job for job, _ in self._pending.values() if job is not None]
        for job in jobs:
            job.cancel()
        self._wake_waiters()

    def wait_idle(self, timeout: float) -> bool:
        return self._idle.wait(timeout)

    def shutdown(self) -> None:
        self.health.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _became_unhealthy(self, reason: str) -> None:
        """Leave the load balancer now, answer everything held with 503, then let the server exit."""
        self.metrics.device_healthy.set(0)
        self._update_ready()
        progress(f"device unhealthy: {reason}")
        self._executor.shutdown(wait=False, cancel_futures=True)  # queued work never reaches the device
        self._wake_waiters()
        if self.on_unhealthy is not None:
            self.on_unhealthy(reason)

    def _wake_waiters(self) -> None:
        """Every request held here stops waiting for its result and is answered at once."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(lambda w=waiter: w.done() or w.set_result(None))

    async def _until_done_or_unhealthy(self, result: asyncio.Future) -> None:
        loop, unhealthy = asyncio.get_running_loop(), asyncio.get_running_loop().create_future()
        waiter = (loop, unhealthy)
        with self._lock:
            self._waiters.add(waiter)
        try:
            if not self.health.healthy or self._refusing_held:
                return
            await asyncio.wait({result, unhealthy}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the client went away: a queued job never runs
            result.cancel()
            raise
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def _unhealthy_rejection(self) -> Rejected:
        return Rejected(503, "unhealthy", f"device unhealthy ({self.health.reason}); retry on another replica", 1)

    @staticmethod
    def _draining_rejection() -> Rejected:
        return Rejected(503, "draining", "server is shutting down and cannot finish this request in time; "
                                         "retry on another replica", 1)

    def _held_rejection(self) -> Rejected:
        """For a request answered before its result: the device broke, or the drain left no time."""
        return self._unhealthy_rejection() if not self.health.healthy else self._draining_rejection()

    # -- requests ----------------------------------------------------------
    def retry_after(self) -> int:
        return max(1, math.ceil((self.queued + self.running) * self._mean_seconds))

    def _admit(self) -> None:
        if not self.health.healthy:
            raise self._unhealthy_rejection()
        if self.draining:
            raise Rejected(503, "draining", "server is shutting down; retry on another replica", 1)
        if not self.warm:
            reason = f"model failed to load: {self.load_error}" if self.load_error else "model is loading"
            raise Rejected(503, "not_ready", reason, 5)
        if self.queued >= self.settings.queue_size:
            raise Rejected(429, "overloaded", f"queue is full ({self.settings.queue_size} waiting); retry later",
                           self.retry_after())

    async def generate(self, params):
        """Run one generation through the queue; returns a PIL image."""
        from .pipeline import GenerationCancelled  # torch is loaded by now

        self.metrics.requests.inc()
        try:
            self._admit()
        except Rejected as rejection:
            self.metrics.errors.labels(rejection.kind).inc()
            raise
        admitted = time.monotonic()
        deadline = admitted + self.settings.request_timeout_s
        token = object()
        with self._lock:
            self.queued += 1
            self._pending[token] = (None, params.steps)
            self._idle.clear()
            self._publish_depth()

        def should_stop() -> bool:
            return time.monotonic() > deadline or self._refusing_held

        def on_device():
            t0 = time.monotonic()
            with self._lock:
                self.queued -= 1
                self.running += 1
                self._pending.pop(token, None)
                self._on_device = (t0, params.steps)
                self._publish_depth()
            try:
                if t0 > deadline:
                    raise TimeoutError("request timed out in the queue")
                if t0 + params.steps * self.step_seconds > self._drain_deadline:
                    raise _NoTimeLeft()
                self.health.started(params.steps)
                image = self.pipeline.generate(params, should_stop=should_stop)
                self.health.succeeded(time.monotonic() - t0, params.steps)
                return image
            except (TimeoutError, GenerationCancelled, _NoTimeLeft):
                self.health.cancelled()
                raise
            except Exception as error:
                self.metrics.device_failures.inc()
                self.health.failed(error)
                raise
            finally:
                elapsed = time.monotonic() - t0
                self.metrics.device_busy.inc(elapsed)
                self.metrics.generation.observe(elapsed)
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * elapsed
                with self._lock:
                    self.running -= 1
                    self._on_device = None
                    self._settle()

        def on_done(future) -> None:
            if future.cancelled():  # caller went away, or the drain refused it, before it ran
                with self._lock:
                    self.queued -= 1
                    self._pending.pop(token, None)
                    self._settle()

        try:
            job = self._executor.submit(on_device)
        except RuntimeError:  # the executor was shut down: the device turned unhealthy meanwhile
            with self._lock:
                self.queued -= 1
                self._pending.pop(token, None)
                self._settle()
            self.metrics.errors.labels("unhealthy").inc()
            raise self._unhealthy_rejection() from None
        with self._lock:
            if token in self._pending:  # not on the device yet: the drain may refuse it
                self._pending[token] = (job, params.steps)
        job.add_done_callback(on_done)
        result = asyncio.wrap_future(job)
        try:
            await self._until_done_or_unhealthy(result)
            if not result.done() or result.cancelled():  # refused while held, or on a hung device: answer now
                result.cancel()
                raise self._held_rejection()
            image = result.result()
        except Rejected as rejection:
            self.metrics.errors.labels(rejection.kind).inc()
            raise
        except _NoTimeLeft:
            self.metrics.errors.labels("draining").inc()
            raise self._draining_rejection() from None
        except Exception as error:  # noqa: BLE001
            if isinstance(error, GenerationCancelled) and self._refusing_held:
                self.metrics.errors.labels("draining").inc()
                raise self._draining_rejection() from error
            if isinstance(error, (TimeoutError, GenerationCancelled)):
                self.metrics.errors.labels("timeout").inc()
                raise Rejected(504, "timeout", f"generation did not finish within "
                                              f"{self.settings.request_timeout_s:g}s") from error
            if not self.health.healthy:  # this failure was the last straw
                self.metrics.errors.labels("unhealthy").inc()
                raise self._unhealthy_rejection() from error
            self.metrics.errors.labels("internal").inc()
            raise Rejected(500, "internal", f"generation failed: {type(error).__name__}") from error
        self.metrics.images.inc()
        self.metrics.latency.observe(time.monotonic() - admitted)
        return image

    def _settle(self) -> None:
        """Publish counters; mark idle when nothing is queued or running. Caller holds the lock."""
        self._publish_depth()
        if self.queued == 0 and self.running == 0:
            self._idle.set()

    def _publish_depth(self) -> None:
        self.metrics.queue_depth.set(self.queued)
        self.metrics.inflight.set(self.queued + self.running)
