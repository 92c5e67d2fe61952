"""Slow clients on loopback: heads sent byte by byte, bodies that never complete and connections
that say nothing are closed within the read bounds (SD21_HEAD_TIMEOUT_S, SD21_BODY_TIMEOUT_S),
and the server keeps serving meanwhile. The server is sd21-serve's own uvicorn server
(build_server, with the bounds its argument parsing reads from that env) on the session's
loaded model, in this process; the gateway is its real process."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from unittest import mock

import httpx
import pytest

from tests.support.sd21_testlib import free_port, subprocess_env, wait_for

HEAD_S, BODY_S = 2, 3
MARGIN_S = 4  # scheduling on a shared machine; far below "never"
GIVE_UP_S = 20  # the whole flood, bounded
HEAD = b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@contextlib.contextmanager
def running(module: str, env: dict, ready_path: str, port: int):
    """`python -m module` with env until the block ends, once it answers ready_path."""
    process = subprocess.Popen([sys.executable, "-m", module], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}{ready_path}", timeout=90)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


BOUNDS_ENV = {"SD21_HOST": "127.0.0.1", "SD21_HEAD_TIMEOUT_S": str(HEAD_S), "SD21_BODY_TIMEOUT_S": str(BODY_S)}


@pytest.fixture(scope="module")
def server(live_server):
    """What sd21-serve's main runs (build_server), on the session's model: a process of its own
    would load torch and the model again for the same protocol."""
    from sd21.server import build_server, create_app, parse_args

    with mock.patch.dict(os.environ, BOUNDS_ENV):
        args = parse_args([])
    assert (args.head_timeout_s, args.body_timeout_s) == (HEAD_S, BODY_S)  # the entrypoint reads the env
    port = free_port()
    uvicorn_server = build_server(create_app(live_server.service, with_ui=False), live_server.service,
                                  args.host, port, args.head_timeout_s, args.body_timeout_s)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", timeout=90)
        yield port
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


class Slow:
    """One slow connection: `kind` says what it sends (see flood)."""

    def __init__(self, port: int, kind: str):
        self.kind, self.sent, self.answer, self.closed_after = kind, 0, b"", None
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        if kind == "body":  # a whole head, then 10 of the 100 bytes it announced
            self.sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n" + b"{" * 10)

    def tick(self) -> None:
        """Send the next byte of a trickled head; note the answer and when the server closed."""
        try:
            if self.kind == "head" and self.sent < len(HEAD):
                self.sock.send(HEAD[self.sent:self.sent + 1])
                self.sent += 1
            while data := self.sock.recv(4096):
                self.answer += data
            self._closed()  # recv() gave b"": the server closed
        except BlockingIOError:
            pass
        except OSError:  # reset or broken pipe: closed too
            self._closed()

    def _closed(self) -> None:
        if self.closed_after is None:
            self.closed_after = time.monotonic() - self.opened
            self.sock.close()


def flood(port: int, heads: int, bodies: int, silent: int, opened: threading.Event | None = None) -> list[Slow]:
    slow = [Slow(port, "head") for _ in range(heads)] + [Slow(port, "body") for _ in range(bodies)] + \
           [Slow(port, "silent") for _ in range(silent)]
    if opened is not None:
        opened.set()
    deadline = time.monotonic() + GIVE_UP_S
    while any(c.closed_after is None for c in slow) and time.monotonic() < deadline:
        for connection in slow:
            if connection.closed_after is None:
                connection.tick()
        time.sleep(0.25)  # a byte every 0.25 s: each byte is "in time", the head never is
    for connection in slow:
        if connection.closed_after is None:
            connection.sock.close()
    return slow


def test_slow_heads_slow_bodies_and_silent_connections_are_closed_within_the_bounds(server):
    url = f"http://127.0.0.1:{server}"
    import concurrent.futures

    opened = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(flood, server, heads=40, bodies=30, silent=10, opened=opened)
        assert opened.wait(timeout=30)  # the flood is on: the server still answers, and still generates
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        generated = httpx.post(url + "/v1/images/generations", json={"prompt": "still here", "steps": 1},
                               timeout=60)
        assert generated.status_code == 200
        slow = flooding.result()
    open_still = [c.kind for c in slow if c.closed_after is None]
    assert not open_still, f"{len(open_still)} slow connections still open after {GIVE_UP_S}s: {set(open_still)}"
    bound = {"head": HEAD_S, "silent": HEAD_S, "body": BODY_S}
    late = [(c.kind, round(c.closed_after, 1)) for c in slow if c.closed_after > bound[c.kind] + MARGIN_S]
    assert not late, late
    for connection in slow:
        if connection.kind == "silent":
            assert connection.answer == b""  # nothing asked, nothing answered
        else:
            assert connection.answer.startswith(b"HTTP/1.1 408 "), connection.answer[:200]
            assert b'"type": "timeout"' in connection.answer and b"connection: close" in connection.answer.lower()
    assert httpx.get(url + "/health", timeout=10).status_code == 200


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_client_that_sends_in_time_is_not_cut_off(server):
    """A body that arrives in parts, each within the bound, completes; between requests the
    connection stays open (keep-alive: request timeout + 60 s), not cut at the head bound."""
    with socket.create_connection(("127.0.0.1", server), timeout=30) as sock:
        body = b'{"prompt": "in parts", "steps": 1}'
        sock.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(BODY_S / 2)
        sock.sendall(body[10:])
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(HEAD_S + 1)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


@pytest.fixture(scope="module")
def gateway():
    """sd21-gateway in front of a Service with no ready replica (a port nobody listens on)."""
    port = free_port()
    env = subprocess_env({}) | BOUNDS_ENV | {
        "SD21_UPSTREAM": f"http://127.0.0.1:{free_port()}", "SD21_PORT": str(port),
        "SD21_METRICS_PORT": str(free_port())}
    with running("sd21.gateway", env, "/health", port):
        yield port


def test_the_gateway_closes_slow_connections_within_the_same_bounds(gateway):
    slow = flood(gateway, heads=20, bodies=10, silent=5)
    open_still = [c.kind for c in slow if c.closed_after is None]
    assert not open_still, f"{len(open_still)} slow connections still open after {GIVE_UP_S}s: {set(open_still)}"
    bound = {"head": HEAD_S, "silent": HEAD_S, "body": BODY_S}
    assert not [c for c in slow if c.closed_after > bound[c.kind] + MARGIN_S]
    assert httpx.get(f"http://127.0.0.1:{gateway}/health", timeout=10).status_code == 200
