"""sd21-gateway: the always-on front door of an endpoint that scales to zero.

With minReplicas 0 no inference pod may exist, so nothing behind the load
balancer would see the request that should wake one up. The gateway runs on the
system nodes, forwards every request to the inference Service unchanged, and
when that Service has no ready pod (the connection is refused) it answers 503
with Retry-After, or holds it (bounded) and sends it on once a replica is ready, no faster
than the ready replicas admit requests (Holding). A generation or a job is checked
here as the server checks it (sd21.request_checks), so a bad one is refused at the front
door, never held or queued. It counts every request it forwards: KEDA reads that counter
from Prometheus to start the first replica and to keep one while requests come;
the servers' own gauges size the rest (stacks/workload/autoscaling/scaling.py).

It imports nothing heavy (no torch), so it runs from the slim image of
Dockerfile.gateway. Its own metrics are on a separate port, not behind the ALB.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass, field
from typing import Optional

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .contract import GatewayEnv
from .env import progress, read
from .errors import allowed_methods, error_response as _error
from .headers import REFUSED_HEADER
from .slow_clients import slow_client_protocol
from .request_checks import GENERATIONS_PATH, HTTP_ERROR_TYPES, BodyLimit, Refused, read_generation
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
    # The defaults are the environment's (sd21.contract.GatewayEnv), but for the model.
    upstream: str  # e.g. http://sd21-inference.sd21.svc:80
    request_timeout_s: int
    cold_retry_after_s: int = GatewayEnv.cold_retry_after_s
    # While no replica is ready, hold up to hold_requests requests for up to hold_s seconds
    # each (0: answer 503 at once); the first in line tries the upstream every hold_poll_s.
    hold_requests: int = GatewayEnv.hold_requests
    hold_s: float = GatewayEnv.hold_s
    hold_poll_s: float = 1.0
    cold_start_s: int = GatewayEnv.cold_start_s  # what a cold start is expected to take (docs/design.md, cold-start budget)
    # The model clients may name (the servers' model); None: not checked here, the
    # replica refuses another (a job, queued here, is then not checked for it).
    served_model: Optional[str] = None
    # A held request that a replica has not refused within this long counts as admitted,
    # and the next one goes: a replica refuses at once (429), but admits silently (its
    # answer comes when the image is done), so this is how the gateway learns its pace.
    admit_grace_s: float = 1.0


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


COLD = object()  # what exchange() returns when no replica answered (the connection was refused)


@dataclass(eq=False)
class Ticket:
    """One held request: until when it may wait, and whether its client is still there."""
    deadline: float
    left: asyncio.Event = field(default_factory=asyncio.Event)


class Holding:
    """The requests held while no replica can take them, in arrival order. Only the first
    in line goes to the upstream, and only when it may: no sooner than the next poll while
    no replica answers, or than a full replica's Retry-After unless an answer frees a place
    first. So held requests reach the replicas no faster than they admit them, and the
    upstream is asked once per poll while none is ready, not once per held request."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.capacity = settings.hold_requests if settings.hold_s > 0 else 0  # holding needs both
        self.line: collections.deque[Ticket] = collections.deque()
        self.changed = asyncio.Condition()
        self.not_before = 0.0  # time.monotonic() before which nobody in line goes

    def full(self) -> bool:
        return len(self.line) >= self.capacity

    def join(self) -> Ticket:
        ticket = Ticket(time.monotonic() + self.settings.hold_s)
        self.line.append(ticket)
        return ticket

    async def wait_turn(self, ticket: Ticket) -> bool:
        """Until the ticket is first and may go (True), or its client left or its time is up (False)."""
        async with self.changed:
            while True:
                now = time.monotonic()
                if ticket.left.is_set() or now >= ticket.deadline:
                    return False
                first = bool(self.line) and self.line[0] is ticket
                if first and now >= self.not_before:
                    return True
                wake = min(ticket.deadline, self.not_before) if first else ticket.deadline
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wake - now):
                        await self.changed.wait()

    async def leave(self, ticket: Ticket) -> None:
        """Out of the line (answered, counted as admitted, gone or timed out): the next may go."""
        async with self.changed:
            if ticket in self.line:
                self.line.remove(ticket)
            self.changed.notify_all()

    async def back_first(self, ticket: Ticket) -> None:
        """A request counted as admitted that was refused after all: first in line again."""
        async with self.changed:
            if ticket not in self.line:
                self.line.appendleft(ticket)

    async def pause(self, seconds: float) -> None:
        """Nobody goes for this long: no replica answered (a poll), or one is full (its Retry-After)."""
        async with self.changed:
            self.not_before = time.monotonic() + seconds

    async def answered(self) -> None:
        """A replica answered a request: one exists, and the place that request took is free."""
        async with self.changed:
            self.not_before = 0.0
            self.changed.notify_all()

    async def client_left(self, ticket: Ticket) -> None:
        async with self.changed:
            ticket.left.set()
            self.changed.notify_all()


async def _watch_disconnect(request: Request, ticket: Ticket, holding: Holding) -> None:
    """Marks the ticket when its client goes. The body is read by now, so the next ASGI
    message is http.disconnect, received when the client closes its connection (ASGI HTTP
    spec: receive blocks after the body until then); uvicorn and Starlette's TestClient do so."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    await holding.client_left(ticket)


def _refusal_to_hold(upstream) -> Optional[float]:
    """How long to wait before the next try, when the replica refused the request without
    starting it (429 overloaded, or 503 with REFUSED_HEADER after the retries elsewhere); None otherwise."""
    if not isinstance(upstream, httpx.Response):
        return None
    if upstream.status_code == 429 or (upstream.status_code == 503 and REFUSED_HEADER in upstream.headers):
        retry_after = upstream.headers.get("retry-after", "")
        return float(retry_after) if retry_after.isdigit() else 1.0  # (RFC 9110 10.2.3: or an HTTP date)
    return None


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
    holding = Holding(settings)

    def is_browser_page(request: Request) -> bool:
        return request.method == "GET" and "text/html" in request.headers.get("accept", "")

    async def send_or_hold(request: Request, body: bytes) -> Response:
        """Forward; while no replica is ready, hold the request (bounded) and forward it when
        one can take it. Pages for people are not held: they say how long it should take. A
        request that finds others held waits behind them instead of overtaking them."""
        if holding.line and not is_browser_page(request):
            return await hold(request, body)
        upstream = await exchange(request, body)
        if upstream is not COLD:
            cold_start.over()
            await holding.answered()
            return relay(upstream)
        cold_start.seen()  # the cold start began with the first request that found no replica
        if is_browser_page(request):
            return answer_cold(request)
        # It will be first in line (the line was empty): its next try is a poll from now.
        await holding.pause(settings.hold_poll_s)
        return await hold(request, body)

    async def hold(request: Request, body: bytes) -> Response:
        if holding.full():
            return answer_cold(request)
        ticket = holding.join()
        metrics.held.inc()
        watcher = asyncio.create_task(_watch_disconnect(request, ticket, holding))
        try:
            return await take_turns(request, body, ticket)
        finally:
            watcher.cancel()
            await holding.leave(ticket)
            metrics.held.dec()

    async def take_turns(request: Request, body: bytes, ticket: Ticket) -> Response:
        """Wait for the turn, go, and on a refusal (no replica, or a full one) wait again."""
        while await holding.wait_turn(ticket):
            upstream = await go(request, body, ticket)
            if upstream is None:  # the client left while it went
                break
            if upstream is COLD:
                await holding.pause(settings.hold_poll_s)
            elif (wait := _refusal_to_hold(upstream)) is not None:
                await upstream.aclose()
                metrics.outcomes.labels("refused_then_held").inc()
                await holding.pause(wait)
            else:
                cold_start.over()
                await holding.answered()
                if isinstance(upstream, httpx.Response):
                    metrics.outcomes.labels("held_then_forwarded").inc()
                return relay(upstream)
            await holding.back_first(ticket)
        if ticket.left.is_set():
            # Nobody reads this: uvicorn drops what is sent on a closed connection.
            metrics.outcomes.labels("left_while_held").inc()
            return _error(503, "warming_up", "The client left while its request was held.")
        return answer_cold(request)

    async def go(request: Request, body: bytes, ticket: Ticket):
        """Send the first held request. Not refused within admit_grace_s, it counts as admitted
        and leaves the line, so the next may go while its image is made. None: its client left."""
        sending = asyncio.create_task(exchange(request, body))
        gone = asyncio.create_task(ticket.left.wait())
        try:
            done, _ = await asyncio.wait({sending, gone}, timeout=settings.admit_grace_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                await holding.leave(ticket)
                done, _ = await asyncio.wait({sending, gone}, return_when=asyncio.FIRST_COMPLETED)
            if sending in done:
                return sending.result()
            return None
        finally:
            gone.cancel()
            if not sending.done():
                sending.cancel()  # the client left: its connection to the replica goes too

    def answer_cold(request: Request) -> Response:
        metrics.cold.inc()
        metrics.outcomes.labels("cold").inc()
        return _cold_response(request, settings, cold_start.seen())

    async def exchange(request: Request, body: bytes):
        """The upstream's answer (headers read, body not yet), COLD, or our own error answer."""
        try:
            for attempt in range(RETRIES_ELSEWHERE + 1):
                upstream = await client.send(client.build_request(
                    request.method, _upstream_url(client, request), headers=_upstream_headers(request), content=body),
                    stream=True)
                refused = upstream.status_code == 503 and REFUSED_HEADER in upstream.headers
                if not refused or attempt == RETRIES_ELSEWHERE:
                    return upstream
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

    def relay(upstream) -> Response:
        if not isinstance(upstream, httpx.Response):
            return upstream  # our own error answer
        metrics.outcomes.labels("forwarded").inc()
        metrics.inflight.inc()  # the relay's end takes it back

        async def chunks():
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

        response = StreamingResponse(chunks(), status_code=upstream.status_code)
        # Repeated headers (Set-Cookie) kept as they are; the raw bytes keep their length and encoding.
        response.raw_headers = [(name.lower(), value) for name, value in upstream.headers.raw
                                if name.lower().decode("latin-1") not in HOP_BY_HOP]
        return response

    async def forwarded(request: Request, body: bytes) -> Response:
        # Counted here, once the request passed the checks: only these need a replica (KEDA).
        metrics.received.inc()
        # In flight from here: waiting for the upstream's answer (a whole generation) included.
        metrics.inflight.inc()
        try:
            return await send_or_hold(request, body)
        finally:
            metrics.inflight.dec()

    async def forward(request: Request) -> Response:
        return await forwarded(request, await request.body())  # BodyLimit stops it past MAX_BODY_BYTES

    async def checked(request: Request):
        """The generation in the request, or the refusal the server would answer (sd21.request_checks)."""
        try:
            return await read_generation(request, settings.served_model)
        except Refused as refused:
            metrics.outcomes.labels(refused.kind).inc()
            return refused.response

    async def generate(request: Request) -> Response:
        answer = await checked(request)
        if isinstance(answer, Response):
            return answer
        return await forwarded(request, await request.body())  # as the client sent it, not re-serialised

    async def submit_job(request: Request) -> Response:
        answer = await checked(request)
        return answer if isinstance(answer, Response) else await jobs.enqueue(answer)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        """Starlette's own 404 and 405 (no route takes the path, or the method) in our envelope."""
        kind = HTTP_ERROR_TYPES.get(exc.status_code, "invalid_request")
        metrics.outcomes.labels(kind).inc()
        response = _error(exc.status_code, kind, exc.detail)
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await client.aclose()

    app = Starlette(routes=[
        Route(HEALTH_PATH, health, methods=["GET", "HEAD"]),
        Route(GENERATIONS_PATH, generate, methods=["POST"]),
        # Jobs are accepted here even while no replica exists (sd21.jobs); the servers do them.
        *(job_routes(jobs, submit_job) if jobs is not None else []),
        Route("/{path:path}", forward, methods=METHODS),
    ], lifespan=lifespan, exception_handlers={HTTPException: http_error},
        # One request must not take the gateway's memory: refused before it is read (sd21.request_checks).
        middleware=[Middleware(BodyLimit, on_refusal=lambda: metrics.outcomes.labels("too_large").inc())])
    app.state.metrics = metrics
    return app


def job_routes(jobs, submit_job) -> list:
    """The job API's routes, its submission checked here as the server checks it."""
    from .jobs import JOBS_PATH

    return [Route(JOBS_PATH, submit_job, methods=["POST"]),
            *jobs.routes()]


def keep_alive_seconds(hold_s: int, request_timeout_s: int) -> int:
    """Idle client connections outlive the ALB's idle timeout (hold + request timeout +
    30 s), so the ALB never reuses one the gateway is closing (a 502)."""
    return hold_s + request_timeout_s + 60


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    env = read(GatewayEnv)
    upstream = GatewayEnv.var("upstream").name
    parser = argparse.ArgumentParser(prog="sd21-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", default=env.upstream,
                        help=f"base URL of the inference Service (env {upstream})")
    parser.add_argument("--port", type=int, default=env.port)
    parser.add_argument("--metrics-port", type=int, default=env.metrics_port)
    parser.add_argument("--host", default=env.host)
    parser.add_argument("--request-timeout", type=int, default=env.request_timeout_s)
    parser.add_argument("--cold-retry-after", type=int, default=env.cold_retry_after_s)
    parser.add_argument("--hold-requests", type=int, default=env.hold_requests,
                        help="requests held at most while no replica is ready (0: answer 503 at once)")
    parser.add_argument("--hold-seconds", type=int, default=env.hold_s,
                        help="how long each is held before the 503")
    parser.add_argument("--cold-start-seconds", type=int, default=env.cold_start_s,
                        help="the expected cold start, shown to people waiting")
    parser.add_argument("--model-name", default=env.model_name,
                        help="the model clients may name, as the servers'")
    args = parser.parse_args(argv)
    if not args.upstream or not args.upstream.startswith(("http://", "https://")):
        parser.error(f"--upstream (or {upstream}) must be an http(s):// URL")
    for name in ("request_timeout", "cold_retry_after", "cold_start_seconds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1 second")
    for name in ("hold_requests", "hold_seconds"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")

    settings = GatewaySettings(args.upstream, args.request_timeout, args.cold_retry_after,
                               hold_requests=args.hold_requests, hold_s=args.hold_seconds,
                               cold_start_s=args.cold_start_seconds, served_model=args.model_name)
    registry = CollectorRegistry()
    from .jobs import JobsApi, JobsSettings

    jobs_settings = JobsSettings.of(env.jobs)
    app = create_app(settings, registry, jobs=JobsApi(jobs_settings) if jobs_settings else None)
    start_http_server(args.metrics_port, addr=args.host, registry=registry)
    from .cloudwatch import Mapping, from_env

    from_env(registry, [Mapping(GATEWAY_RECEIVED.removesuffix("_total"), CW_GATEWAY_REQUESTS, "counter"),
                        Mapping(GATEWAY_COLD.removesuffix("_total"), CW_COLD_REQUESTS, "counter"),
                        Mapping(GATEWAY_HELD, CW_HELD_REQUESTS, "gauge"),
                        Mapping(GATEWAY_LAST_COLD_START, CW_COLD_START_TOTAL, "gauge", unit="Seconds")])
    progress(f"sd21-gateway: {args.host}:{args.port} -> {args.upstream}; metrics on :{args.metrics_port}")
    # The upstream's Date and Server headers pass through.
    # Read deadlines as the server's: the front door is the first thing a slow client reaches.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=args.request_timeout,
                timeout_keep_alive=keep_alive_seconds(args.hold_seconds, args.request_timeout), server_header=False,
                date_header=False, http=slow_client_protocol(env.head_timeout_s, env.body_timeout_s))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
