"""SD21_CPU_FAULT: a test facility that makes the cpu backend fail like a broken device.

Honoured by the cpu backend only (other backends ignore it and say so):
- `error-after:N`  every generation after the N-th raises (a NeuronCore that fails);
- `hang-after:N`   every generation after the N-th blocks forever (a runtime that hangs).
The warm-up is the first generation. The fault acts at the UNet, where a real
device spends its time; generations are counted by the last part each one runs.
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Optional

import torch

from .env import progress

ENV = "SD21_CPU_FAULT"
KINDS = ("error-after", "hang-after")


class InjectedDeviceError(RuntimeError):
    """What the cpu backend raises under `error-after:N`."""


def parse(spec: str) -> tuple[str, int]:
    kind, _, count = spec.partition(":")
    if kind not in KINDS or not count.isdigit():
        raise ValueError(f"{ENV}={spec!r}: expected one of {', '.join(k + ':N' for k in KINDS)} (N >= 0)")
    return kind, int(count)


class _Faults:
    def __init__(self, kind: str, after: int):
        self.kind, self.after, self.finished = kind, after, 0
        self._never = threading.Event()

    def wrap_unet(self, unet: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def faulty(*tensors: torch.Tensor) -> torch.Tensor:
            if self.finished >= self.after:
                if self.kind == "error-after":
                    raise InjectedDeviceError(f"injected device error ({ENV}={self.kind}:{self.after})")
                self._never.wait()  # hang-after: blocks forever, like a stuck execution
            return unet(*tensors)
        return faulty

    def wrap_last(self, part: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def counted(*tensors: torch.Tensor) -> torch.Tensor:
            result = part(*tensors)
            self.finished += 1
            return result
        return counted


def inject(backend: str, parts: dict, last_part: str, environ: Optional[dict] = None) -> dict:
    """The parts, with the fault of SD21_CPU_FAULT applied when the backend is cpu."""
    spec = (environ if environ is not None else os.environ).get(ENV, "")
    if not spec:
        return parts
    if backend != "cpu":
        progress(f"warning: {ENV} ignored: it is honoured by the cpu backend only (backend {backend})")
        return parts
    kind, after = parse(spec)
    progress(f"{ENV}={spec}: every generation after the {after}-th will {'raise' if kind == 'error-after' else 'hang'}")
    faults = _Faults(kind, after)
    return {**parts, "unet": faults.wrap_unet(parts["unet"]), last_part: faults.wrap_last(parts[last_part])}
