"""The error envelope every 4xx/5xx of ours uses: {"error": {"type", "message"[, "details"]}}
(Starlette only: the gateway image imports it too)."""
from __future__ import annotations

from typing import Optional

from starlette.responses import JSONResponse

from .headers import REFUSED_HEADER

# Refusals that mean "not this replica": the request never started, so it is safe to send
# again elsewhere. The header says so (the gateway retries on it); the keep-alive connection
# is closed, so a client's next request opens a new one that the Service sends to another pod.
GO_ELSEWHERE = frozenset({"unhealthy", "draining"})


def error_response(status: int, kind: str, message: str, retry_after: Optional[int] = None,
                   details=None) -> JSONResponse:
    body = {"error": {"type": kind, "message": message}}
    if details:
        body["error"]["details"] = details
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    if kind in GO_ELSEWHERE:
        headers.update({"Connection": "close", REFUSED_HEADER: kind})
    return JSONResponse(body, status_code=status, headers=headers or None)


def allowed_methods(request) -> str:
    """The Allow of a 405 (RFC 9110 section 15.5.6: a 405 MUST carry one): every method some
    route of the app takes at this path. Starlette's own names only the first route it
    matched, and a path may be taken by several (a route of its own and a catch-all)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, "methods", None) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


def describe_validation(errors) -> tuple[str, list]:
    details = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        message = error.get("msg", "invalid").removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            message = f"malformed JSON: {error.get('ctx', {}).get('error', 'could not parse')}"
        details.append({"field": location, "message": message})
    return "; ".join(f"{d['field']}: {d['message']}" for d in details), details


def validation_response(invalid) -> JSONResponse:
    """422 for a pydantic ValidationError (or any ValueError), as the API answers it."""
    errors = invalid.errors() if hasattr(invalid, "errors") else [{"loc": (), "msg": str(invalid)}]
    message, details = describe_validation(errors)
    return error_response(422, "invalid_request", message, details=details)
