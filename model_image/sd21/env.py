"""Command-line flags that default from environment variables (Kubernetes passes env)."""
from __future__ import annotations

import os
import sys


def env_default(name: str, default=None):
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_number(name: str, default, parse, kind: str):
    value = env_default(name)
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError:
        raise SystemExit(f"error: {name}={value!r} is not {kind}")


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def progress(message: str) -> None:
    """Progress lines for Job/initContainer logs: unbuffered, one per step."""
    print(message, file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code
