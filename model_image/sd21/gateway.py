"""sd21-gateway: the always-on front door of an endpoint that scales to zero.

With minReplicas 0 no inference pod may exist, so nothing behind the load
balancer would see the request that should wake one up. The gateway runs on the
system nodes, forwards every request to the inference Service unchanged, and
when that Service has no ready pod (the connection is refused) it answers 503
with Retry-After. It counts every request it receives: KEDA reads that counter
from Prometheus to start the first replica and to keep one while requests come;
the servers' own gauges size the rest (k8s_charts/workload/scale_to_zero.py).

It imports nothing heavy (no torch), so it runs from the slim image of
Dockerfile.gateway. Its own metrics are on a separate port, not behind the ALB.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .env import env_default, env_int, progress
from .errors import error_response as _error
from .headers import MAX_BODY_BYTES, REFUSED_HEADER
from .metric_names import (
    CW_COLD_REQUESTS, CW_COLD_START_TOTAL, CW_GATEWAY_REQUESTS, CW_HELD_REQUESTS, GATEWAY_COLD, GATEWAY_HELD,
    GATEWAY_LAST_COLD_START, GATEWAY_RECEIVED,
)

HEALTH_PATH = "/health"
# Per RFC 9110 these describe one connection, not the message: never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "proxy-connection"})
# The body is forwarded as read, so httpx sets its length.
NOT_FORWARDED_UPSTREAM = HOP_BY_HOP | {"content-length"}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# A replica that refuses a request it cannot serve says so (REFUSED_HEADER); the gateway
# sends it again, on a new connection, so another pod serves it while the endpoints catch up.
RETRIES_ELSEWHERE = 2


@dataclass(frozen=True)
class GatewaySettings:
    upstream: str  # e.g. http://sd21-inference.sd21.svc:80
    request_timeout_s: int
    cold_retry_after_s: int = 60
    # While no replica is ready, hold up to hold_requests requests for up to hold_s seconds
    # each (0: answer 503 at once), trying the upstream every hold_poll_s.
    hold_requests: int = 0
    hold_s: float = 0.0
    hold_poll_s: float = 1.0
    cold_start_s: int = 300  # what a cold start is expected to take (the README's budget)


class ColdStart:
    """When the current cold start began (the first request that found no replica), and how
    long the last one took until a replica answered: a replica was wanted -> first answer."""

    def __init__(self, on_over=lambda seconds: None) -> None:
        self.since: float | None = None
        self._on_over = on_over

    def seen(self) -> float:
        if self.since is None:
            self.since = time.monotonic()
        return time.monotonic() - self.since

    def over(self) -> None:
        if self.since is not None:
            self._on_over(time.monotonic() - self.since)
        self.since = None


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Unlabelled counters are exported at 0 from the start, so once scraped,
        # Prometheus' increase() sees the very first request. The library adds "_total".
        self.received = Counter(GATEWAY_RECEIVED.removesuffix("_total"),
                                "Requests received for forwarding (the autoscaler's activity signal)",
                                registry=registry)
        self.cold = Counter(GATEWAY_COLD.removesuffix("_total"),
                            "Requests answered 503 because no inference pod was ready (scaled to zero or starting)",
                            registry=registry)
        self.outcomes = Counter("sd21_gateway_outcomes", "Requests by outcome", ["outcome"], registry=registry)
        self.inflight = Gauge("sd21_gateway_inflight_requests", "Requests being forwarded now", registry=registry)
        self.held = Gauge(GATEWAY_HELD, "Requests held while no replica is ready", registry=registry)
        self.last_cold_start = Gauge(GATEWAY_LAST_COLD_START, "The last cold start: from the first request that "
                                     "found no replica to the first answer of one", registry=registry)


def _upstream_headers(request: Request) -> list[tuple[bytes, bytes]]:
    """The client's headers, repeated ones kept, Host included (the UI builds its URLs from it)."""
    headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in NOT_FORWARDED_UPSTREAM]
    if "accept-encoding" not in request.headers:
        headers.append((b"accept-encoding", b"identity"))  # not httpx's default gzip for a client that asked none
    return headers


def _upstream_url(client: httpx.AsyncClient, request: Request) -> httpx.URL:
    """The path and query exactly as the client sent them (no re-encoding, no reordering)."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    return client.base_url.copy_with(raw_path=raw_path + (b"?" + query if query else b""))


def _cold_response(request: Request, settings: GatewaySettings, elapsed_s: float = 0.0) -> Response:
    message = (f"No replica is ready: the endpoint scales to zero when idle and is starting one now. "
               f"Retry in {settings.cold_retry_after_s} s; a cold start takes a few minutes.")
    headers = {"Retry-After": str(settings.cold_retry_after_s), "Cache-Control": "no-store"}
    if "text/html" in request.headers.get("accept", ""):
        remaining = max(10, round(settings.cold_start_s - elapsed_s))
        refresh = min(settings.cold_retry_after_s, 15)
        page = (f'<!doctype html><meta http-equiv="refresh" content="{refresh}">'
                f"<title>Starting</title><h1>Starting, about {remaining} s</h1>"
                f"<p>The endpoint scales to zero when idle and is starting a replica now "
                f"({round(elapsed_s)} s so far). This page reloads by itself.</p>")
        return HTMLResponse(page, status_code=503, headers=headers)
    body = {"error": {"type": "warming_up", "message": message}}
    return JSONResponse(body, status_code=503, headers=headers)


async def _bounded_body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


COLD = object()  # what send() returns when no replica answered (the connection was refused)


def create_app(settings: GatewaySettings, registry: CollectorRegistry | None = None,
               transport: httpx.AsyncBaseTransport | None = None, jobs=None) -> Starlette:
    """The gateway app; `transport` replaces the network in tests."""
    metrics = GatewayMetrics(registry or CollectorRegistry())
    # Generation may wait in the server's queue up to its timeout; reads get a margin on top.
    timeout = httpx.Timeout(connect=3.0, read=settings.request_timeout_s + 15.0, write=30.0, pool=5.0)
    # A new connection per request: kube-proxy picks the pod per connection, so a
    # kept-alive one would pin traffic to old (even draining) pods and starve new ones.
    client = httpx.AsyncClient(base_url=settings.upstream, timeout=timeout, follow_redirects=False,
                               limits=httpx.Limits(max_keepalive_connections=0), transport=transport)

    async def health(request: Request) -> Response:
        # The gateway's own liveness: the ALB must keep it in service while no replica runs.
        return JSONResponse({"status": "ok"})

    cold_start = ColdStart(on_over=metrics.last_cold_start.set)
    holding = {"count": 0}

    def is_browser_page(request: Request) -> bool:
        return request.method == "GET" and "text/html" in request.headers.get("accept", "")

    async def send_or_hold(request: Request, body: bytes) -> Response:
        """Forward; while no replica is ready, hold the request (bounded) and forward it the
        moment one is. Pages for people are not held: they say how long it should take."""
        response = await send(request, body)
        if response is not COLD:
            cold_start.over()
            return response
        elapsed = cold_start.seen()
        if is_browser_page(request) or holding["count"] >= settings.hold_requests:
            return answer_cold(request, elapsed)
        holding["count"] += 1
        metrics.held.inc()
        deadline = time.monotonic() + settings.hold_s
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(min(settings.hold_poll_s, max(0.0, deadline - time.monotonic())))
                response = await send(request, body)
                if response is not COLD:
                    cold_start.over()
                    metrics.outcomes.labels("held_then_forwarded").inc()
                    return response
        finally:
            holding["count"] -= 1
            metrics.held.dec()
        return answer_cold(request, cold_start.seen())

    def answer_cold(request: Request, elapsed: float) -> Response:
        metrics.cold.inc()
        metrics.outcomes.labels("cold").inc()
        return _cold_response(request, settings, elapsed)

    async def send(request: Request, body: bytes) -> Response:
        try:
            for attempt in range(RETRIES_ELSEWHERE + 1):
                upstream = await client.send(client.build_request(
                    request.method, _upstream_url(client, request), headers=_upstream_headers(request), content=body),
                    stream=True)
                if upstream.status_code != 503 or REFUSED_HEADER not in upstream.headers or attempt == RETRIES_ELSEWHERE:
                    break
                await upstream.aclose()
                metrics.outcomes.labels("retried_elsewhere").inc()
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # Refused (kube-proxy rejects a Service without ready pods) or dropped: no replica to serve.
            return COLD
        except httpx.TimeoutException:
            metrics.outcomes.labels("upstream_timeout").inc()
            return _error(504, "upstream_timeout", "The inference service did not answer in time.")
        except httpx.HTTPError as err:
            metrics.outcomes.labels("upstream_error").inc()
            return _error(502, "upstream_error", f"The inference service failed: {type(err).__name__}.")
        metrics.outcomes.labels("forwarded").inc()
        metrics.inflight.inc()  # the relay's end takes it back

        async def relay():
            # Streamed as sent (the web UI's event streams must not be buffered). Once the
            # headers are out an upstream failure can only cut the connection: re-raised.
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            except httpx.HTTPError:
                metrics.outcomes.labels("upstream_broken").inc()
                raise
            finally:
                await upstream.aclose()
                metrics.inflight.dec()

        response = StreamingResponse(relay(), status_code=upstream.status_code)
        # Repeated headers (Set-Cookie) kept as they are; the raw bytes keep their length and encoding.
        response.raw_headers = [(name.lower(), value) for name, value in upstream.headers.raw
                                if name.lower().decode("latin-1") not in HOP_BY_HOP]
        return response

    async def forward(request: Request) -> Response:
        metrics.received.inc()
        body = await _bounded_body(request)
        if body is None:
            metrics.outcomes.labels("too_large").inc()
            return _error(413, "request_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        # In flight from here: waiting for the upstream's answer (a whole generation) included.
        metrics.inflight.inc()
        try:
            return await send_or_hold(request, body)
        finally:
            metrics.inflight.dec()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await client.aclose()

    app = Starlette(routes=[
        Route(HEALTH_PATH, health, methods=["GET", "HEAD"]),
        # Jobs are accepted here even while no replica exists (sd21.jobs); the servers do them.
        *(jobs.routes() if jobs is not None else []),
        Route("/{path:path}", forward, methods=METHODS),
    ], lifespan=lifespan)
    app.state.metrics = metrics
    return app


def keep_alive_seconds(hold_s: int, request_timeout_s: int) -> int:
    """Idle client connections outlive the ALB's idle timeout (hold + request timeout +
    30 s), so the ALB never reuses one the gateway is closing (a 502)."""
    return hold_s + request_timeout_s + 60


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="sd21-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", default=env_default("SD21_UPSTREAM"),
                        help="base URL of the inference Service (env SD21_UPSTREAM)")
    parser.add_argument("--port", type=int, default=env_int("SD21_PORT", 8080))
    parser.add_argument("--metrics-port", type=int, default=env_int("SD21_METRICS_PORT", 9090))
    parser.add_argument("--host", default=env_default("SD21_HOST", "0.0.0.0"))
    parser.add_argument("--request-timeout", type=int, default=env_int("SD21_REQUEST_TIMEOUT_S", 300))
    parser.add_argument("--cold-retry-after", type=int, default=env_int("SD21_COLD_RETRY_AFTER_S", 60))
    parser.add_argument("--hold-requests", type=int, default=env_int("SD21_HOLD_REQUESTS", 0),
                        help="requests held at most while no replica is ready (0: answer 503 at once)")
    parser.add_argument("--hold-seconds", type=int, default=env_int("SD21_HOLD_S", 0),
                        help="how long each is held before the 503")
    parser.add_argument("--cold-start-seconds", type=int, default=env_int("SD21_COLD_START_S", 300),
                        help="the expected cold start, shown to people waiting")
    args = parser.parse_args(argv)
    if not args.upstream or not args.upstream.startswith(("http://", "https://")):
        parser.error("--upstream (or SD21_UPSTREAM) must be an http(s):// URL")
    for name in ("request_timeout", "cold_retry_after", "cold_start_seconds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1 second")
    for name in ("hold_requests", "hold_seconds"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")

    settings = GatewaySettings(args.upstream, args.request_timeout, args.cold_retry_after,
                               hold_requests=args.hold_requests, hold_s=args.hold_seconds,
                               cold_start_s=args.cold_start_seconds)
    registry = CollectorRegistry()
    from .jobs import JobsApi, JobsSettings

    jobs_settings = JobsSettings.from_env()
    app = create_app(settings, registry, jobs=JobsApi(jobs_settings) if jobs_settings else None)
    start_http_server(args.metrics_port, addr=args.host, registry=registry)
    from .cloudwatch import Mapping, from_env

    from_env(registry, [Mapping(GATEWAY_RECEIVED.removesuffix("_total"), CW_GATEWAY_REQUESTS, "counter"),
                        Mapping(GATEWAY_COLD.removesuffix("_total"), CW_COLD_REQUESTS, "counter"),
                        Mapping(GATEWAY_HELD, CW_HELD_REQUESTS, "gauge"),
                        Mapping(GATEWAY_LAST_COLD_START, CW_COLD_START_TOTAL, "gauge", unit="Seconds")])
    progress(f"sd21-gateway: {args.host}:{args.port} -> {args.upstream}; metrics on :{args.metrics_port}")
    # The upstream's Date and Server headers pass through.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=args.request_timeout,
                timeout_keep_alive=keep_alive_seconds(args.hold_seconds, args.request_timeout), server_header=False,
                date_header=False)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
