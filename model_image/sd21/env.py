"""What every entrypoint does with its environment and its output."""
from __future__ import annotations

import os
import sys
from typing import Mapping, Optional, TypeVar

from .contract import ContractError, Env

E = TypeVar("E", bound=Env)


def read(contract: type[E], environ: Optional[Mapping[str, str]] = None) -> E:
    """The process's environment (sd21.contract), parsed: a bad value ends the process
    with one line naming the variable and exit status 2, never a traceback."""
    try:
        return contract.from_env(os.environ if environ is None else environ)
    except ContractError as error:
        raise SystemExit(fail(str(error)))


def progress(message: str) -> None:
    """Progress lines for Job/initContainer logs: unbuffered, one per step."""
    print(message, file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code
