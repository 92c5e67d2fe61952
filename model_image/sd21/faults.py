"""A test facility that makes the cpu backend fail like a broken device (ServerEnv.cpu_fault).

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

from .contract import ServerEnv
from .env import progress

FAULT = ServerEnv.var("cpu_fault")
ENV = FAULT.name


class InjectedDeviceError(RuntimeError):
    """What the cpu backend raises under `error-after:N`."""


def parse(spec: str) -> tuple[str, int]:
    """(kind, N); a ValueError naming the variable for anything else (the contract checks the form)."""
    kind, _, count = FAULT.parse(spec).partition(":")
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
    """The parts, with the fault the environment names (ENV) applied when the backend is cpu."""
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
