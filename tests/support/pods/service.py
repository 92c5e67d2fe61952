"""A Service as the kubelet, the endpoints controller and kube-proxy make it, on loopback.

Each container's readinessProbe is run by the kubelet's rules, read from its spec
(periodSeconds, timeoutSeconds, failureThreshold, successThreshold; not ready until
the first success); a container whose process exited is not ready at once. Each new
TCP connection goes round-robin to a ready endpoint; with none ready it is refused
(kube-proxy rejects connections to a Service without endpoints): the address only
listens while an endpoint is ready. Endpoints can be added later (a replica starting).
"""
from __future__ import annotations

import socket
import threading
import time

import httpx

from tools.dev.localstack import free_port
from tests.support.pods.kubelet import Container


class Endpoint:
    def __init__(self, container: Container, on_change):
        self.container = container
        probe = container.spec["readinessProbe"]
        get = probe["httpGet"]
        self.url = f"http://127.0.0.1:{container.adaptations.port(get['port'])}{get['path']}"
        self.port = container.adaptations.port(container.spec["ports"][0]["containerPort"])
        self.period = probe.get("periodSeconds", 10)
        self.timeout = probe.get("timeoutSeconds", 1)
        self.failure_threshold = probe.get("failureThreshold", 3)
        self.success_threshold = probe.get("successThreshold", 1)
        self.ready = False
        self._on_change = on_change
        self._stop = threading.Event()
        threading.Thread(target=self._probe, daemon=True).start()

    def _set(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self._on_change(self, ready)

    def _probe(self) -> None:
        failures = successes = 0
        while not self._stop.is_set():
            if self.container.process.poll() is not None:
                self._set(False)  # the container is not running: the pod is not ready
            else:
                try:
                    ok = 200 <= httpx.get(self.url, timeout=self.timeout).status_code < 400
                except httpx.HTTPError:
                    ok = False
                failures, successes = (0, successes + 1) if ok else (failures + 1, 0)
                if ok and successes >= self.success_threshold:
                    self._set(True)
                elif not ok and failures >= self.failure_threshold:
                    self._set(False)
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()


class Service:
    def __init__(self, containers: list[Container]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.events: list[tuple[float, int, bool]] = []  # (monotonic time, endpoint index, ready)
        self._lock = threading.Lock()
        self._next = 0
        self._listener: socket.socket | None = None
        self._closed = False
        self.endpoints: list[Endpoint] = []
        for container in containers:
            self.add(container)
        threading.Thread(target=self._accept, daemon=True).start()

    def add(self, container: Container) -> None:
        with self._lock:
            self.endpoints.append(Endpoint(container, self._changed))

    def _changed(self, endpoint: Endpoint, ready: bool) -> None:
        with self._lock:
            self.events.append((time.monotonic(), self.endpoints.index(endpoint), ready))
            any_ready = any(e.ready for e in self.endpoints)
            if any_ready and self._listener is None and not self._closed:
                self._listener = socket.create_server(("127.0.0.1", self.port))
                self._listener.settimeout(0.2)
            elif not any_ready and self._listener is not None:
                self._listener.close()
                self._listener = None

    def wait_ready(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(e.ready for e in self.endpoints) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} endpoints ready within {timeout}s")
            time.sleep(0.05)

    def _pick(self) -> Endpoint | None:
        with self._lock:
            ready = [e for e in self.endpoints if e.ready]
            if not ready:
                return None
            self._next += 1
            return ready[self._next % len(ready)]

    def _accept(self) -> None:
        while not self._closed:
            listener = self._listener
            if listener is None:
                time.sleep(0.02)
                continue
            try:
                client, _ = listener.accept()
            except (OSError, TimeoutError):
                continue
            client.settimeout(None)
            endpoint = self._pick()
            if endpoint is None:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # a reset: no endpoints
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", endpoint.port), timeout=5)
            except OSError:
                client.close()
                continue
            # The 5 s is for connecting only: kept on the socket, every generation slower than
            # that (a loaded machine) was cut off mid-answer and reached the client as a 502.
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        for endpoint in self.endpoints:
            endpoint.stop()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
