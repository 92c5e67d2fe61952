"""sd21-serve: HTTP API + Gradio UI over the staged model, with queueing and drain."""
from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import ErrorResponse, GenerationRequest, GenerationResponse
from .artifact import BACKENDS
from .contract import ServerEnv
from .env import fail, progress, read
from . import metric_names as names
from .cloudwatch import Mapping, from_env as cloudwatch_from_env
from .errors import allowed_methods, describe_validation as _describe_validation, error_response as _error
from .health import EXIT_UNHEALTHY, HealthSettings
from .images import png_bytes
from .request_checks import HTTP_ERROR_TYPES, TOO_LARGE, BodyLimit, model_refusal, too_large as _too_large
from .service import GenerationService, Rejected, ServiceSettings
from .slow_clients import BODY_TIMEOUT_S, HEAD_TIMEOUT_S, slow_client_protocol

API_PATH = "/v1/images/generations"
# What reaches CloudWatch (the dashboard and the alarms read these names).
CLOUDWATCH_METRICS = [
    Mapping("sd21_requests", names.CW_REQUESTS, "counter"),
    Mapping("sd21_images", names.CW_IMAGES, "counter"),
    Mapping("sd21_errors", names.CW_ERRORS, "counter", label="kind"),
    Mapping("sd21_request_latency_seconds", names.CW_LATENCY, "histogram", unit="Seconds"),
    Mapping("sd21_queue_depth", names.CW_QUEUE_DEPTH, "gauge"),
    Mapping("sd21_ready", names.CW_READY, "gauge"),
    Mapping("sd21_device_failures", names.CW_DEVICE_FAILURES, "counter"),
    Mapping("sd21_cold_start_seconds", names.CW_COLD_START, "gauge", unit="Seconds", label="phase",
            dimension=names.CLOUDWATCH_PHASE_DIMENSION),
]
UI_PATH = "/ui"


def create_app(service: Optional[GenerationService] = None, with_ui: bool = True, jobs=None) -> FastAPI:
    """The app; without a service it still documents itself (used by openapi_document)."""
    app = FastAPI(
        title="Stable Diffusion 2.1-base (512x512)",
        version="1",
        description="Text-to-image generation. One image at a time per replica; "
                    "a full queue answers 429 with Retry-After.",
    )
    app.state.service = service
    served = service.settings.served_model if service is not None else None

    def count(kind: str) -> None:
        if service is not None:
            service.metrics.errors.labels(kind).inc()

    app.add_middleware(BodyLimit, on_refusal=lambda: count("request_too_large"))

    def refuse_other_model(body: GenerationRequest) -> Optional[JSONResponse]:
        """404 naming the served model when `model` names another (OpenAI clients send it)."""
        refused = model_refusal(body.model, served)
        if refused is not None:
            count("model_not_found")
        return refused

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if request.scope.get(TOO_LARGE):
            count("request_too_large")
            return _too_large()
        if exc.status_code == 400:  # a body FastAPI could not parse: as any invalid request
            count("invalid_request")
            return _error(422, "invalid_request", f"malformed request body: {exc.detail}")
        kind = HTTP_ERROR_TYPES.get(exc.status_code, "invalid_request")
        count(kind)
        response = _error(exc.status_code, kind, str(exc.detail))
        if exc.status_code == 405:  # RFC 9110 section 15.5.6: a 405 MUST carry Allow
            response.headers["Allow"] = allowed_methods(request)
        return response

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse(UI_PATH + "/" if with_ui and service is not None else "/docs")

    @app.get("/v1/models", summary="The served model (for OpenAI clients)")
    async def models():
        return {"object": "list", "data": [{"id": served, "object": "model", "owned_by": "sd21"}] if served else []}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        message, details = _describe_validation(exc.errors())
        if service is not None:
            service.metrics.errors.labels("invalid_request").inc()
        return _error(422, "invalid_request", message, details=details)

    @app.get("/health", summary="Liveness: the process serves HTTP and its device is not broken",
             responses={503: {"model": ErrorResponse}})
    async def health():
        if service is not None and not service.health.healthy:
            return _error(503, "unhealthy", f"device unhealthy: {service.health.reason}")
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: model loaded and warmed, not draining",
             responses={503: {"model": ErrorResponse}})
    async def ready():
        if service is not None and service.is_ready:
            return {"status": "ready"}
        if service is not None and not service.health.healthy:
            return _error(503, "unhealthy", f"device unhealthy: {service.health.reason}")
        if service is None or not service.warm:
            reason = (service.load_error if service and service.load_error else "model is loading")
            return _error(503, "not_ready", reason)
        return _error(503, "draining", "server is shutting down")

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        registry = service.metrics.registry if service else None
        return Response(generate_latest(registry) if registry else b"", media_type=CONTENT_TYPE_LATEST)

    @app.post(
        API_PATH,
        summary="Generate one 512x512 image",
        response_model=GenerationResponse,
        responses={
            200: {"content": {"image/png": {}}, "description": "JSON (b64_json) or PNG bytes (png)"},
            404: {"model": ErrorResponse, "description": "`model` names a model not served here"},
            413: {"model": ErrorResponse, "description": "Request body over 1 MiB"},
            422: {"model": ErrorResponse, "description": "Invalid request, with the reason"},
            429: {"model": ErrorResponse, "description": "Queue full; see Retry-After"},
            503: {"model": ErrorResponse, "description": "Loading or draining; see Retry-After"},
            504: {"model": ErrorResponse, "description": "Timed out"},
        },
    )
    async def generate(body: GenerationRequest):
        from .pipeline import GenerationParams

        if service is None:
            return _error(503, "not_ready", "no model service")
        refused = refuse_other_model(body)
        if refused is not None:
            return refused
        seed = body.seed if body.seed is not None else random.randrange(2**32)
        params = GenerationParams.of(body.model_dump(), seed)
        try:
            image = await service.generate(params)
        except Rejected as rejection:
            return _error(rejection.status, rejection.kind, rejection.message, rejection.retry_after)
        data = await asyncio.get_running_loop().run_in_executor(None, png_bytes, image)
        if body.response_format == "png":
            return Response(data, media_type="image/png", headers={"X-Seed": str(seed)})
        return {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(data).decode(), "seed": seed}]}

    if jobs is not None:
        add_job_routes(app, jobs, refuse_other_model)
    answer_head_as_get(app)
    if served is not None:
        _publish_served_model(app, served)
    if with_ui and service is not None:
        from .ui import mount_ui

        app = mount_ui(app, service, UI_PATH)
    return app


def add_job_routes(app: FastAPI, jobs, refuse_other_model: Callable) -> None:
    from .jobs import JOBS_PATH

    @app.post(JOBS_PATH, status_code=202, summary="Submit a generation as a job (answered at once)",
              responses={202: {"description": "Queued: the job id, its seed and its Location"},
                         404: {"model": ErrorResponse, "description": "`model` names a model not served here"},
                         413: {"model": ErrorResponse, "description": "Request body over 1 MiB"},
                         422: {"model": ErrorResponse, "description": "Invalid request, with the reason"},
                         503: {"model": ErrorResponse, "description": "The job queue is unavailable"}})
    async def submit_job(body: GenerationRequest):
        return refuse_other_model(body) or await jobs.enqueue(body)

    @app.get(JOBS_PATH + "/{job_id}", summary="A job: queued, running, succeeded (with its image URL) or failed",
             responses={404: {"model": ErrorResponse, "description": "No such job (or it expired)"}})
    async def read_job(job_id: str):
        return await jobs.describe(job_id)


def answer_head_as_get(app: FastAPI) -> None:
    """HEAD on every GET route (RFC 9110 section 9.1: general-purpose servers MUST support
    both; 9.3.2: HEAD is GET without content; uvicorn's h11_impl writes no body for HEAD).
    FastAPI's api_route registers only the methods named, so each GET route gets a HEAD twin,
    kept out of the published document."""
    from fastapi.routing import APIRoute

    for route in [r for r in app.router.routes if isinstance(r, APIRoute) and "GET" in r.methods]:
        app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False,
                          response_class=route.response_class, name=f"{route.name}_head")


def _publish_served_model(app: FastAPI, served: str) -> None:
    """The OpenAPI document says which `model` is accepted: exactly as strict as the server."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            model = schema["components"]["schemas"]["GenerationRequest"]["properties"]["model"]
            model["anyOf"] = [{"type": "string", "enum": [served]}, {"type": "null"}]
            app.openapi_schema = schema
        return app.openapi_schema
    app.openapi = openapi


def openapi_document() -> dict:
    """The API's OpenAPI document, without loading a model or torch."""
    return create_app(service=None, with_ui=False).openapi()


def parse_args(argv=None, environ=None) -> argparse.Namespace:
    """The flags, defaulting to the environment (sd21.contract.ServerEnv, kept as `args.env`)."""
    env = read(ServerEnv, environ)
    parser = argparse.ArgumentParser(prog="sd21-serve", description=__doc__)
    parser.add_argument("--backend", default=env.backend, choices=BACKENDS)
    parser.add_argument("--model-dir", default=env.model_dir)
    parser.add_argument("--model-version", default=env.model_version)
    parser.add_argument("--model-name", default=env.model_name, help="the name clients pass as `model` (OpenAI-style)")
    parser.add_argument("--host", default=env.host)
    parser.add_argument("--port", type=int, default=env.port)
    parser.add_argument("--queue-size", type=int, default=env.queue_size)
    parser.add_argument("--request-timeout-s", type=float, default=env.request_timeout_s)
    parser.add_argument("--drain-grace-s", type=float, default=env.drain_grace_s)
    parser.add_argument("--no-ui", action="store_true", default=not env.ui)
    parser.add_argument("--max-consecutive-failures", type=int, default=env.max_consecutive_failures,
                        help="failed generations in a row after which the device counts as broken")
    parser.add_argument("--watchdog-factor", type=float, default=env.watchdog_factor,
                        help="a generation running longer than this many times its measured duration is hung")
    parser.add_argument("--watchdog-min-s", type=float, default=env.watchdog_min_s,
                        help="the hang bound is never below this")
    parser.add_argument("--unhealthy-exit-delay-s", type=float, default=env.unhealthy_exit_delay_s,
                        help="time to answer what was held with 503 before exiting when the device breaks")
    parser.add_argument("--head-timeout-s", type=float, default=env.head_timeout_s,
                        help="a request head must arrive within this (a new connection: of its opening)")
    parser.add_argument("--body-timeout-s", type=float, default=env.body_timeout_s,
                        help="a request body must arrive within this after its head")
    args = parser.parse_args(argv)
    args.env = env
    return args


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    if args.queue_size < 1 or args.request_timeout_s <= 0 or args.drain_grace_s < 0:
        raise SystemExit("error: queue size must be >= 1, request timeout > 0, drain grace >= 0")
    if args.unhealthy_exit_delay_s < 0:
        raise SystemExit("error: the unhealthy exit delay must be >= 0")
    try:
        health = HealthSettings(max_consecutive_failures=args.max_consecutive_failures,
                                watchdog_factor=args.watchdog_factor, watchdog_min_s=args.watchdog_min_s)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    return ServiceSettings(backend=args.backend, model_dir=Path(args.model_dir), model_version=args.model_version,
                           queue_size=args.queue_size, request_timeout_s=args.request_timeout_s,
                           drain_grace_s=args.drain_grace_s, health=health, served_model=args.model_name)


def exit_when_unhealthy(delay_s: float):
    """The device is broken or hung: exit after answering what was held. os._exit, because
    a device thread stuck in the runtime would block a normal interpreter exit forever."""
    def exit_soon(reason: str) -> None:
        def later() -> None:
            time.sleep(delay_s)
            fail(f"device unhealthy, exiting so the kubelet restarts the container: {reason}", EXIT_UNHEALTHY)
            os._exit(EXIT_UNHEALTHY)
        threading.Thread(target=later, name="unhealthy-exit", daemon=True).start()
    return exit_soon


def build_server(app: FastAPI, service: GenerationService, host: str, port: int,
                 head_timeout_s: float = HEAD_TIMEOUT_S, body_timeout_s: float = BODY_TIMEOUT_S):
    """A uvicorn server whose SIGTERM/SIGINT first drains the service, then exits."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if service.draining:  # second signal: stop now
                self.force_exit = True
                return
            service.start_drain()
            threading.Thread(target=self._exit_when_idle, name="drain", daemon=True).start()

        def _exit_when_idle(self) -> None:
            finished = service.wait_idle(service.settings.drain_grace_s)
            if not finished:  # 503 draining for what is left, never uvicorn's bare 500 at shutdown
                service.refuse_held()
            progress("drained; exiting" if finished else "drain grace period over; what was left got 503; exiting")
            self.should_exit = True

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                            lifespan="on", timeout_keep_alive=keep_alive_seconds(service.settings.request_timeout_s),
                            http=slow_client_protocol(head_timeout_s, body_timeout_s))
    return DrainingServer(config)


def keep_alive_seconds(request_timeout_s: float) -> float:
    """Idle connections stay open longer than the ALB's idle timeout (request timeout +
    30 s), so the ALB never reuses one the server is closing (a 502)."""
    return request_timeout_s + 60


# Exit codes: 0 stopped, 1 the model failed to load, 2 bad settings, 7 no usable accelerator,
# 8 the device turned unhealthy while serving (sd21.health).
def main(argv=None) -> int:
    args = parse_args(argv)
    settings = settings_from_args(args)
    if args.head_timeout_s <= 0 or args.body_timeout_s <= 0:
        return fail("the head and body timeouts must be > 0", 2)
    from .backends import check_device
    from .devices import DeviceUnavailable

    # A broken node shows in seconds, as a restarting container with this one line,
    # not after the startup probe's budget.
    try:
        progress(f"accelerator: {check_device(args.backend)}")
    except DeviceUnavailable as error:
        return fail(str(error), 7)
    service = GenerationService(settings)
    from .jobs import JobsApi, JobsSettings, JobWorker

    jobs_settings = JobsSettings.of(args.env.jobs)
    jobs = JobsApi(jobs_settings, count=lambda kind: service.metrics.errors.labels(kind).inc()) if jobs_settings \
        else None
    app = create_app(service, with_ui=not args.no_ui, jobs=jobs)
    worker = JobWorker(jobs_settings, service).start() if jobs_settings else None
    server = build_server(app, service, args.host, args.port, args.head_timeout_s, args.body_timeout_s)
    service.on_load_failure = lambda: setattr(server, "should_exit", True)
    service.on_unhealthy = exit_when_unhealthy(args.unhealthy_exit_delay_s)
    service.load_in_background()
    publisher = cloudwatch_from_env(service.metrics.registry, CLOUDWATCH_METRICS)
    progress(f"serving on http://{args.host}:{args.port} (API {API_PATH}, UI {UI_PATH})")
    server.run()
    if worker is not None:
        worker.stop()
    service.shutdown()
    if publisher is not None:
        publisher.stop()
    if service.load_error:
        return fail(f"the model failed to load: {service.load_error}", 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
