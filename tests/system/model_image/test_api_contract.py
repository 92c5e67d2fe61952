"""The API contract, asked of the real server app: fuzzed from its own OpenAPI document
(schemathesis, positive and negative), hand-made hostile requests, and the official
OpenAI SDK. The device is a stand-in that returns a blank image at once, so fuzzing is
about the contract, not the model."""
from __future__ import annotations

import base64
import io
import json
import os

import httpx
import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis.checks import load_all_checks, not_a_server_error

from sd21.api import ERROR_TYPES
from sd21.headers import MAX_BODY_BYTES
from tools.dev.localstack import serving
from sd21.server import API_PATH, create_app
from sd21.service import GenerationService, ServiceSettings

load_all_checks()
from schemathesis.specs.openapi.checks import (  # noqa: E402 - registered by load_all_checks
    content_type_conformance, negative_data_rejection, positive_data_acceptance,
    response_schema_conformance, status_code_conformance,
)

SERVED = "sd21-test-model"
# Per operation and mode; SD21_FUZZ_EXAMPLES=N for a longer run by hand (the counts are printed with -s).
FUZZ_EXAMPLES = int(os.environ.get("SD21_FUZZ_EXAMPLES", "60"))


class BlankDevice:
    def generate(self, params, should_stop=None):
        return Image.new("RGB", (512, 512))


def make_service(queue_size: int = 64) -> GenerationService:
    service = GenerationService(ServiceSettings(queue_size=queue_size, served_model=SERVED), pipeline=BlankDevice())
    service.load_in_background().join(timeout=30)
    assert service.warm
    return service


@pytest.fixture(scope="module")
def jobs_settings(s3_env):
    """The session's loopback S3 and SQS as the job routes see them."""
    from sd21.jobs import JobsSettings
    from tests.conftest import TEST_BUCKET, job_resources

    queue = job_resources("contract-jobs")
    return JobsSettings(queue["SD21_JOBS_QUEUE_URL"], queue["SD21_JOBS_DLQ_URL"], queue["SD21_JOBS_TOPIC_ARN"],
                        TEST_BUCKET)


@pytest.fixture(scope="module")
def app(jobs_settings):
    """The server's app with its job routes."""
    from sd21.jobs import JobsApi

    service = make_service()
    yield create_app(service, with_ui=False, jobs=JobsApi(jobs_settings))
    service.shutdown()


@pytest.fixture(scope="module")
def gateway_app(jobs_settings, url):
    """The scale-to-zero gateway in front of that server (on loopback), with the same job
    queue and the same model: what the ALB reaches at minReplicas 0."""
    from sd21.gateway import GatewaySettings, create_app as create_gateway
    from sd21.jobs import JobsApi

    app = create_gateway(GatewaySettings(upstream=url, request_timeout_s=60, served_model=SERVED),
                         jobs=JobsApi(jobs_settings))
    with serving(app) as gateway_url:  # its upstream client lives as long as its lifespan
        yield gateway_url


@pytest.fixture(scope="module")
def url(app):
    with serving(app) as base:
        yield base


def in_envelope(response) -> None:
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert body["error"]["type"] in ERROR_TYPES and body["error"]["message"], body


# --- fuzzing from the published document -------------------------------------------------

def operations(app) -> dict:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[operation.label] = operation
    return found


# Operations without parameters have no invalid input to generate: positive only.
FUZZED = [("POST /v1/images/generations", GenerationMode.POSITIVE), ("POST /v1/images/generations", GenerationMode.NEGATIVE),
          ("POST /v1/images/jobs", GenerationMode.POSITIVE), ("POST /v1/images/jobs", GenerationMode.NEGATIVE),
          ("GET /v1/images/jobs/{job_id}", GenerationMode.POSITIVE),
          ("GET /v1/models", GenerationMode.POSITIVE), ("GET /health", GenerationMode.POSITIVE),
          ("GET /ready", GenerationMode.POSITIVE)]


def fuzz(operation, mode, examples: int) -> int:
    """No 5xx; no schema-valid request refused; no invalid one accepted; every response as
    documented, and every 4xx in the {"error": ...} envelope. Returns how many were sent."""
    counted = {"requests": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call_and_validate(checks=[
            not_a_server_error, positive_data_acceptance, negative_data_rejection, status_code_conformance,
            content_type_conformance, response_schema_conformance])
        in_envelope(response)
        counted["requests"] += 1

    run()
    return counted["requests"]


@pytest.mark.parametrize("label,mode", FUZZED, ids=[f"{label}-{mode.value}" for label, mode in FUZZED])
def test_fuzzed_requests_keep_the_contract(app, label, mode):
    sent = fuzz(operations(app)[label], mode, FUZZ_EXAMPLES)
    print(f"\n{label} ({mode.value}): {sent} generated requests, contract kept")


# The operations that reach the generation routes and the job routes through the gateway.
FUZZED_THROUGH_GATEWAY = [(label, mode) for label, mode in FUZZED if label.split()[1].startswith("/v1/images")]


@pytest.mark.parametrize("label,mode", FUZZED_THROUGH_GATEWAY,
                         ids=[f"{label}-{mode.value}" for label, mode in FUZZED_THROUGH_GATEWAY])
def test_fuzzed_requests_through_the_gateway_keep_the_same_contract(gateway_app, label, mode):
    """The gateway validates before it holds or queues (sd21.request_checks): the server's
    document, asked of the gateway (which forwards GET /openapi.json), holds there too."""
    schema = schemathesis.openapi.from_url(gateway_app + "/openapi.json")
    operation = {result.ok().label: result.ok() for result in schema.get_all_operations()}[label]
    sent = fuzz(operation, mode, FUZZ_EXAMPLES // 2)
    print(f"\nthrough the gateway, {label} ({mode.value}): {sent} generated requests, contract kept")


# --- hand-made hostile requests ------------------------------------------------------------

HOSTILE = [
    ("invalid UTF-8", b'{"prompt": "\xff\xfe"}', 422),
    ("1000-deep nesting", b'{"prompt": ' + b"[" * 1000 + b"]" * 1000 + b"}", 422),
    ("5000-digit integer", b'{"prompt": "a cat", "seed": ' + b"9" * 5000 + b"}", 422),
    ("not JSON", b"{prompt: cat", 422),
    ("JSON array", b"[1, 2]", 422),
    ("only invisible characters", json.dumps({"prompt": "\u200b\u2060\ufeff \u00ad"}).encode(), 422),
    ("NaN guidance", b'{"prompt": "a cat", "guidance_scale": NaN}', 422),
    ("guidance too high", b'{"prompt": "a cat", "guidance_scale": 31}', 422),
    ("a fraction for steps", b'{"prompt": "a cat", "steps": 2.5}', 422),
    ("true for steps", b'{"prompt": "a cat", "steps": true}', 422),
    ("a string for seed", b'{"prompt": "a cat", "seed": "7"}', 422),
    ("another size", b'{"prompt": "a cat", "size": "1024x1024"}', 422),
    ("another model", b'{"prompt": "a cat", "model": "dall-e-3"}', 404),
]


@pytest.mark.parametrize("body,status", [(b, s) for _, b, s in HOSTILE], ids=[name for name, _, _ in HOSTILE])
def test_hostile_bodies_get_a_4xx_in_the_envelope(url, body, status):
    response = httpx.post(url + API_PATH, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == status, response.text
    in_envelope(response)


def test_a_wrong_model_name_is_refused_naming_the_served_one(app, url):
    before = errors_counted(app, "model_not_found")
    response = httpx.post(url + API_PATH, json={"prompt": "a cat", "model": "dall-e-3"}, timeout=30)
    assert response.status_code == 404 and response.json()["error"]["type"] == "model_not_found"
    assert SERVED in response.json()["error"]["message"]
    assert errors_counted(app, "model_not_found") == before + 1


def openai_sdk_image_fields() -> list[str]:
    """Every body field the official SDK's images.generate can send (its own signature)."""
    import inspect

    from openai.resources.images import Images

    return [name for name in inspect.signature(Images.generate).parameters
            if name not in ("self", "extra_headers", "extra_query", "extra_body", "timeout")]


# What each accepted OpenAI field may be here (one meaningful value each).
ACCEPTED_OPENAI_VALUES = {"prompt": "a cat", "model": SERVED, "n": 1, "size": "512x512", "response_format": "b64_json",
                          "quality": "standard", "output_format": "png", "user": "someone"}


@pytest.mark.parametrize("field", openai_sdk_image_fields())
def test_every_field_the_openai_sdk_sends_is_accepted_or_refused_naming_it(url, field):
    response = httpx.post(url + API_PATH, json={"prompt": "a cat", "steps": 1,
                                                field: ACCEPTED_OPENAI_VALUES.get(field, "vivid")}, timeout=60)
    if field in ACCEPTED_OPENAI_VALUES:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert field in message, message
    if field == "style":  # the reasons say what to do instead
        assert "describe the style in the prompt" in message


def test_a_large_body_is_refused_before_it_is_read(app, url):
    before = errors_counted(app, "request_too_large")
    declared = httpx.post(url + API_PATH, content=b"x" * (MAX_BODY_BYTES + 1),
                          headers={"content-type": "application/json"}, timeout=30)
    assert declared.status_code == 413 and declared.json()["error"]["type"] == "request_too_large"

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    streamed = httpx.post(url + API_PATH, content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert streamed.status_code == 413 and streamed.json()["error"]["type"] == "request_too_large"
    assert errors_counted(app, "request_too_large") == before + 2
    assert httpx.post(url + API_PATH, json={"prompt": "still fine"}, timeout=30).status_code == 200


def errors_counted(app, kind: str) -> float:
    return app.state.service.metrics.errors.labels(kind)._value.get()


def test_unknown_paths_and_methods_answer_in_the_envelope_and_are_counted(app, url):
    for path, kind in (("/nope", "not_found"), (API_PATH, "method_not_allowed")):
        before = errors_counted(app, kind)
        response = httpx.get(url + path)
        in_envelope(response)
        assert response.json()["error"]["type"] == kind
        assert errors_counted(app, kind) == before + 1


def allowed(response) -> set[str]:
    return {method.strip() for method in response.headers.get("Allow", "").split(",") if method.strip()}


@pytest.mark.parametrize("method,path,methods", [
    ("GET", API_PATH, {"POST"}), ("DELETE", "/health", {"GET", "HEAD"}), ("POST", "/v1/models", {"GET", "HEAD"}),
    ("PUT", "/v1/images/jobs", {"POST"}), ("POST", "/v1/images/jobs/some-job", {"GET", "HEAD"}),
    ("POST", "/", {"GET", "HEAD"}),
])
def test_every_405_says_in_allow_which_methods_the_path_takes(url, method, path, methods):
    """RFC 9110 section 15.5.6: the origin server MUST generate an Allow header field in a 405."""
    response = httpx.request(method, url + path, timeout=30)
    assert response.status_code == 405
    in_envelope(response)
    assert allowed(response) == methods


@pytest.mark.parametrize("path", ["/health", "/ready", "/v1/models", "/metrics"])
def test_head_answers_as_get_does_without_a_body(url, path):
    """RFC 9110 section 9.3.2: HEAD is GET without the content (and section 9.1: servers MUST support both)."""
    get, head = httpx.get(url + path, timeout=30), httpx.head(url + path, timeout=30)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_head_stays_out_of_the_published_document(app):
    assert all("head" not in operations for operations in app.openapi()["paths"].values())


def test_the_root_leads_people_to_the_ui():
    service = make_service()
    try:
        with serving(create_app(service, with_ui=True)) as base:
            response = httpx.get(base + "/", follow_redirects=False)
            assert response.status_code == 307 and response.headers["location"] == "/ui/"
            assert httpx.get(base + "/", follow_redirects=True).status_code == 200
    finally:
        service.shutdown()


def test_the_document_says_what_the_server_enforces(app):
    document = app.openapi()
    request = document["components"]["schemas"]["GenerationRequest"]["properties"]
    assert request["guidance_scale"]["minimum"] == 0 and request["guidance_scale"]["maximum"] == 30
    assert request["size"]["enum"] == ["512x512"]
    assert request["prompt"]["pattern"] and request["prompt"]["maxLength"] == 1000
    assert {"type": "string", "enum": [SERVED]} in request["model"]["anyOf"]


# --- the official OpenAI SDK ----------------------------------------------------------------

def test_the_openai_sdk_generates_an_image(url):
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    assert [model.id for model in client.models.list()] == [SERVED]
    result = client.images.generate(model=SERVED, prompt="a lighthouse at dusk", size="512x512",
                                    response_format="b64_json", n=1, quality="standard", user="tester")
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.size == (512, 512)
    with pytest.raises(NotFoundError) as refused:
        client.images.generate(model="dall-e-3", prompt="a cat", size="512x512", response_format="b64_json")
    assert SERVED in str(refused.value)
