"""Command-line flags that default from environment variables (Kubernetes passes env)."""
from __future__ import annotations

import os
import sys


def env_default(name: str, default=None):
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    value = env_default(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"error: {name}={value!r} is not an integer")


def env_float(name: str, default: float) -> float:
    value = env_default(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise SystemExit(f"error: {name}={value!r} is not a number")


def progress(message: str) -> None:
    """Progress lines for Job/initContainer logs: unbuffered, one per step."""
    print(message, file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code
