"""Device health: when the accelerator can only fail or hang, say so at once.

Two signals, both measured by the server itself:
- consecutive failed generations (a NeuronCore that raises on every execution);
- a watchdog on the running generation, whose bound follows the device's own
  measured step time (a generation stuck inside the runtime never returns).

Either one makes the device unhealthy, once and for good: the service stops
being ready (the pod leaves the load balancer), refuses and fails what it holds
with 503 + Retry-After, and the server exits non-zero so the kubelet restarts the
container. A broken device then restarts again and again, which is the
CrashLoopBackOff that node repair and the alarms key on.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .contract import ServerEnv

# The server's exit status when the device is unhealthy (1-7 are taken: see server.py).
EXIT_UNHEALTHY = 8


@dataclass(frozen=True)
class HealthSettings:
    # Defaults: the environment's (sd21.contract.ServerEnv).
    max_consecutive_failures: int = ServerEnv.max_consecutive_failures  # failed generations in a row: broken
    watchdog_factor: float = ServerEnv.watchdog_factor  # bound = factor x measured seconds per step x steps ...
    watchdog_min_s: float = ServerEnv.watchdog_min_s    # ... but never below this
    watchdog_poll_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_consecutive_failures < 1:
            raise ValueError("max consecutive failures must be >= 1")
        if self.watchdog_factor < 1 or self.watchdog_min_s <= 0 or self.watchdog_poll_s <= 0:
            raise ValueError("watchdog factor must be >= 1, its minimum and poll interval > 0")


class DeviceHealth:
    """Tracks the device; calls `on_unhealthy(reason)` exactly once when it breaks."""

    def __init__(self, settings: HealthSettings, on_unhealthy: Callable[[str], None]):
        self.settings = settings
        self.reason: Optional[str] = None
        self.consecutive_failures = 0
        self.step_seconds: Optional[float] = None  # measured; None until the warm-up
        self._on_unhealthy = on_unhealthy
        self._lock = threading.Lock()
        self._running: Optional[tuple[float, float]] = None  # (started, bound)
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="device-watchdog", daemon=True)
        self._watchdog.start()

    @property
    def healthy(self) -> bool:
        return self.reason is None

    def bound_for(self, steps: int) -> float:
        """Seconds a generation of `steps` may run before the device counts as hung."""
        if self.step_seconds is None:
            return float("inf")  # not measured yet: the startup probe bounds the warm-up
        return max(self.settings.watchdog_min_s, self.settings.watchdog_factor * self.step_seconds * max(steps, 1))

    def started(self, steps: int) -> None:
        with self._lock:
            self._running = (time.monotonic(), self.bound_for(steps))

    def succeeded(self, seconds: float, steps: int) -> None:
        per_step = seconds / max(steps, 1)
        with self._lock:
            self._running = None
            self.consecutive_failures = 0
            # A slow moving average: one quick image does not shrink the bound much.
            self.step_seconds = per_step if self.step_seconds is None else 0.9 * self.step_seconds + 0.1 * per_step

    def cancelled(self) -> None:
        """Stopped between steps (timeout or caller gone): says nothing about the device."""
        with self._lock:
            self._running = None

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self._running = None
            self.consecutive_failures += 1
            failures = self.consecutive_failures
        if failures >= self.settings.max_consecutive_failures:
            self.mark_unhealthy(f"{failures} generations in a row failed on the device "
                                f"(last: {type(error).__name__}: {error})")

    def mark_unhealthy(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
        self._stop.set()
        self._on_unhealthy(reason)

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.watchdog_poll_s):
            with self._lock:
                running = self._running
            if running is None:
                continue
            started, bound = running
            elapsed = time.monotonic() - started
            if elapsed > bound:
                self.mark_unhealthy(f"a generation has run {elapsed:.1f}s, over the {bound:.1f}s bound "
                                    f"({self.settings.watchdog_factor:g} x {self.step_seconds:.3f}s per step "
                                    f"measured here, at least {self.settings.watchdog_min_s:g}s): the device is hung")
