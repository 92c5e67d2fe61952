"""The checks of a generation request that the server and the gateway share, so a bad
request gets one answer wherever it arrives: the body limit (before the body is read),
the content type, the fields (sd21.api.GenerationRequest) and the model name.

The server reads its body with FastAPI; the gateway (Starlette and pydantic only, no
FastAPI in its image) reads it with `read_generation`, which follows FastAPI's rules
step for step, so both answer the same status and the same envelope (a test compares
them request by request: tests/system/model_image/test_one_request_validation.py).
"""
from __future__ import annotations

import email.message
import json
from typing import Callable, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse

from .errors import error_response, validation_response
from .headers import MAX_BODY_BYTES

# The route of a generation (the server's API_PATH; sd21.jobs JOBS_PATH takes one as a job).
GENERATIONS_PATH = "/v1/images/generations"
# Starlette's own refusals (routing, body parsing), in the same envelope as ours.
HTTP_ERROR_TYPES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
TOO_LARGE = "sd21.body_too_large"  # set in the scope when BodyLimit stopped a body


class _TooLarge(Exception):
    pass


def too_large(max_bytes: int = MAX_BODY_BYTES) -> JSONResponse:
    return error_response(413, "request_too_large", f"the request body is larger than {max_bytes} bytes")


class BodyLimit:
    """413 for a body over max_bytes, by its Content-Length or as it streams in, before it
    is read into memory. The server has it (no gateway sits in front when minReplicas >= 1)
    and so has the gateway (one request must not take its memory)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, on_refusal: Optional[Callable[[], None]] = None):
        self.app, self.max_bytes, self.on_refusal = app, max_bytes, on_refusal

    def _refusal(self) -> JSONResponse:
        if self.on_refusal is not None:
            self.on_refusal()
        return too_large(self.max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refusal()(scope, receive, send)
        received, started = 0, False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    scope[TOO_LARGE] = True  # FastAPI turns a failing body read into a 400
                    raise _TooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refusal()(scope, receive, send)


def model_refusal(requested: Optional[str], served: Optional[str]) -> Optional[JSONResponse]:
    """404 naming the served model when `model` names another (OpenAI clients send it).
    None when it names the served one, names none, or the served one is not known here."""
    if requested is None or served is None or requested == served:
        return None
    return error_response(404, "model_not_found", f"model {requested!r} is not served here; this endpoint "
                                                  f"serves {served!r}")


def is_json(content_type: Optional[str]) -> bool:
    """FastAPI's rule for a JSON body (fastapi/routing.py, strict_content_type, its default):
    application/json or application/*+json; no Content-Type is not JSON."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class Refused(Exception):
    """A request the checks refuse; `response` is the answer, in the API's envelope."""

    def __init__(self, kind: str, response: JSONResponse):
        super().__init__(kind)
        self.kind, self.response = kind, response


class Invalid(ValueError):
    """Validation errors made here, in pydantic's shape (what errors.validation_response reads)."""

    def __init__(self, errors: list[dict]):
        super().__init__(errors[0]["msg"])
        self._errors = errors

    def errors(self) -> list[dict]:
        return self._errors


def parse_generation(content_type: Optional[str], body: bytes):
    """The GenerationRequest in the body, or Refused with the answer the server gives."""
    from pydantic import ValidationError

    from .api import GenerationRequest

    if not body:  # FastAPI: no body is a missing one
        raise Refused("invalid_request", validation_response(Invalid([{"loc": ("body",), "msg": "Field required"}])))
    value = body  # not JSON: validated as it is (bytes), as FastAPI does, which refuses it
    if is_json(content_type):
        try:
            value = json.loads(body)
        except json.JSONDecodeError as error:  # the error FastAPI raises (fastapi/routing.py)
            raise Refused("invalid_request", validation_response(Invalid([{
                "type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error",
                "ctx": {"error": error.msg}}]))) from None
        except ValueError:  # not UTF-8 (or -16/-32): FastAPI's 400, which the server answers as 422
            raise Refused("invalid_request", error_response(
                422, "invalid_request", "malformed request body: There was an error parsing the body")) from None
    try:
        # FastAPI validates a body model from Python values, attributes allowed (fastapi/_compat/v2.py).
        return GenerationRequest.model_validate(value, from_attributes=True)
    except ValidationError as invalid:
        raise Refused("invalid_request", validation_response(invalid)) from None


async def read_generation(request: Request, served: Optional[str]):
    """The generation in a Starlette request, checked as the server checks it (the body limit
    is BodyLimit's, around the app); Refused otherwise."""
    body = parse_generation(request.headers.get("content-type"), await request.body())
    refused = model_refusal(body.model, served)
    if refused is not None:
        raise Refused("model_not_found", refused)
    return body
