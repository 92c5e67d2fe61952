"""sd21-gateway: the always-on front door of an endpoint that scales to zero.

With minReplicas 0 no inference pod may exist, so nothing behind the load
balancer would see the request that should wake one up. The gateway runs on the
system nodes, forwards every request to the inference Service unchanged, and
when that Service has no ready pod (the connection is refused) it answers 503
with Retry-After and counts the request in `sd21_gateway_cold_requests_total`.
KEDA reads that counter from Prometheus to start the first replica; the servers'
own gauges take over from there (stacks/workload/scale_to_zero.py).

It imports nothing heavy (no torch), so it runs from the slim `gateway` stage of
the Dockerfile. Its own metrics are on a separate port, not behind the ALB.
"""
from __future__ import annotations

import argparse
import contextlib
import html
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .env import env_default, env_int, progress

HEALTH_PATH = "/health"
COLD_REQUESTS = "sd21_gateway_cold_requests_total"
# Per RFC 9110 these describe one connection, not the message: never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class GatewaySettings:
    upstream: str  # e.g. http://sd21-inference.sd21.svc:80
    request_timeout_s: int
    cold_retry_after_s: int = 60


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Counter names get "_total" appended by the client library.
        self.cold = Counter(COLD_REQUESTS.removesuffix("_total"),
                            "Requests answered 503 because no inference pod was ready (scaled to zero or starting)",
                            registry=registry)
        self.requests = Counter("sd21_gateway_requests", "Requests by outcome", ["outcome"], registry=registry)
        self.inflight = Gauge("sd21_gateway_inflight_requests", "Requests being forwarded now", registry=registry)


def _forwarded_headers(headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP}


def _cold_response(request: Request, settings: GatewaySettings) -> Response:
    message = (f"No replica is ready: the endpoint scales to zero when idle and is starting one now. "
               f"Retry in {settings.cold_retry_after_s} s; a cold start takes a few minutes.")
    headers = {"Retry-After": str(settings.cold_retry_after_s), "Cache-Control": "no-store"}
    if "text/html" in request.headers.get("accept", ""):
        page = (f'<!doctype html><meta http-equiv="refresh" content="{settings.cold_retry_after_s}">'
                f"<title>Starting</title><p>{html.escape(message)}</p>")
        return HTMLResponse(page, status_code=503, headers=headers)
    body = {"error": {"type": "warming_up", "message": message}}
    return JSONResponse(body, status_code=503, headers=headers)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def create_app(settings: GatewaySettings, registry: CollectorRegistry | None = None) -> Starlette:
    metrics = GatewayMetrics(registry or CollectorRegistry())
    # Generation may wait in the server's queue up to its timeout; reads get a margin on top.
    timeout = httpx.Timeout(connect=3.0, read=settings.request_timeout_s + 15.0, write=30.0, pool=5.0)
    client = httpx.AsyncClient(base_url=settings.upstream, timeout=timeout, follow_redirects=False)

    async def health(request: Request) -> Response:
        # The gateway's own liveness: the ALB must keep it in service while no replica runs.
        return JSONResponse({"status": "ok"})

    async def forward(request: Request) -> Response:
        upstream_request = client.build_request(
            request.method, request.url.path, params=request.url.query.encode(),
            headers=_forwarded_headers(request.headers), content=await request.body())
        metrics.inflight.inc()
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.ConnectError:
            metrics.inflight.dec()
            metrics.cold.inc()
            metrics.requests.labels("cold").inc()
            return _cold_response(request, settings)
        except httpx.TimeoutException:
            metrics.inflight.dec()
            metrics.requests.labels("upstream_timeout").inc()
            return _error(504, "upstream_timeout", "The inference service did not answer in time.")
        except httpx.HTTPError as err:
            metrics.inflight.dec()
            metrics.requests.labels("upstream_error").inc()
            return _error(502, "upstream_error", f"The inference service failed: {type(err).__name__}.")
        metrics.requests.labels("forwarded").inc()

        async def finish() -> None:
            await upstream.aclose()
            metrics.inflight.dec()

        # Streamed through: the web UI's event streams must not be buffered.
        return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code,
                                 headers=_forwarded_headers(upstream.headers), background=BackgroundTask(finish))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await client.aclose()

    app = Starlette(routes=[
        Route(HEALTH_PATH, health, methods=["GET", "HEAD"]),
        Route("/{path:path}", forward, methods=METHODS),
    ], lifespan=lifespan)
    app.state.metrics = metrics
    return app


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
    args = parser.parse_args(argv)
    if not args.upstream or not args.upstream.startswith(("http://", "https://")):
        parser.error("--upstream (or SD21_UPSTREAM) must be an http(s):// URL")
    for name in ("request_timeout", "cold_retry_after"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1 second")

    settings = GatewaySettings(args.upstream, args.request_timeout, args.cold_retry_after)
    registry = CollectorRegistry()
    app = create_app(settings, registry)
    start_http_server(args.metrics_port, addr=args.host, registry=registry)
    progress(f"sd21-gateway: {args.host}:{args.port} -> {args.upstream}; metrics on :{args.metrics_port}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=args.request_timeout)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
