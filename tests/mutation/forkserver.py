"""A fork server for make mutants: each mutant's test run starts from a process that has
already imported the heavy third-party libraries (torch, diffusers, moto, ...), which
otherwise take about 6 s of every run. Nothing of ours is imported here, so each forked
run imports the mutated module fresh from disk.

    python -m tests.mutation.forkserver SOCKET     # in the mutated tree; serves until killed
    python -m tests.mutation.forkserver --run SOCKET PYTEST_ARGS...   # one test run; exits with pytest's code
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys

# Third-party only: importing any module of ours here would freeze the unmutated source.
PRELOAD = ("torch", "diffusers", "transformers", "boto3", "moto", "httpx", "starlette", "fastapi", "uvicorn",
           "hypothesis", "schemathesis", "PIL", "numpy", "prometheus_client", "pytest")
# A mutant that makes a test hang is killed after this long in one test (setup and teardown
# included). The covering tests take a few seconds each even on a loaded machine; cosmic-ray's
# own timeout (tests/mutation/run.py) is longer still.
TEST_LIMIT_S = 20


def serve(path: str) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    sys.dont_write_bytecode = True  # two mutants of one size in one second would share a stale .pyc
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    while True:
        connection, _ = server.accept()
        with connection:
            request = json.loads(connection.makefile().readline())
            child = os.fork()
            if child == 0:
                server.close()
                connection.close()
                _run_pytest(request["args"])
            _, status = os.waitpid(child, 0)
            code = os.waitstatus_to_exitcode(status)
            connection.sendall(f"{code}\n".encode())


def _run_pytest(args: list[str]) -> None:
    """In the forked child: one pytest session, then exit without the parent's clean-up."""
    import pytest

    class OneTestAtMost:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item, nextitem):
            signal.alarm(TEST_LIMIT_S)  # SIGALRM's default action ends this child: a failed run
            yield
            signal.alarm(0)

    try:
        code = int(pytest.main(args, plugins=[OneTestAtMost()]))
    except BaseException:  # noqa: BLE001 - any crash is a failed run
        code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(path: str, args: list[str]) -> int:
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    client.sendall((json.dumps({"args": args}) + "\n").encode())
    answer = client.makefile().readline().strip()
    if not answer:
        print("error: the fork server closed without an answer", file=sys.stderr)
        return 3
    code = int(answer)
    return code if code >= 0 else 128 - code  # killed by a signal (a test past its limit): a failed run


if __name__ == "__main__":
    if sys.argv[1] == "--run":
        raise SystemExit(run(sys.argv[2], sys.argv[3:]))
    serve(sys.argv[1])
