"""One request validation for every route that accepts a generation, wherever it runs:
the server's POST /v1/images/generations and /v1/images/jobs, and the gateway's (which
takes jobs itself at scale to zero, and holds generations while no replica is ready).
A bad request gets the same answer from both, and the gateway never reads more than
MAX_BODY_BYTES of it (issue 21, finding 2)."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from sd21.headers import MAX_BODY_BYTES

SERVED = "sd21-test-model"
GENERATIONS, JOBS = "/v1/images/generations", "/v1/images/jobs"


class BlankDevice:
    def generate(self, params, should_stop=None):
        return Image.new("RGB", (512, 512))


class Store:
    """JobStore's create, in memory."""

    def __init__(self):
        self.created = []

    def create(self, request: dict) -> dict:
        self.created.append(request)
        return {"id": f"{len(self.created):032x}", "request": request, "created": "now"}


class Sqs:
    def send_message(self, **message):
        pass


def jobs_api():
    from sd21.jobs import JobsApi, JobsSettings

    return JobsApi(JobsSettings("https://sqs.invalid/queue", None, None, "bucket"), store=Store(), sqs=Sqs())


@pytest.fixture(scope="module")
def server():
    from sd21.server import create_app
    from sd21.service import GenerationService, ServiceSettings

    service = GenerationService(ServiceSettings(queue_size=4, served_model=SERVED), pipeline=BlankDevice())
    service.load_in_background().join(timeout=30)
    assert service.warm
    with TestClient(create_app(service, with_ui=False, jobs=jobs_api())) as client:
        yield client
    service.shutdown()


def gateway_app(forwarded: list, served: str | None = SERVED):
    """The gateway with its job routes, in front of a stand-in replica that records what reaches it."""
    from sd21.gateway import GatewaySettings, create_app

    def upstream(request):
        forwarded.append(request.content)
        return httpx.Response(200, headers={"content-type": "application/json"},
                              stream=httpx.ByteStream(b'{"created": 0, "data": []}'))  # streamed once, as a reply is

    jobs = jobs_api()
    app = create_app(GatewaySettings("http://upstream.invalid", request_timeout_s=60, served_model=served),
                     CollectorRegistry(), transport=httpx.MockTransport(upstream), jobs=jobs)
    return app, jobs.store


@pytest.fixture()
def gateway():
    forwarded: list = []
    app, store = gateway_app(forwarded)
    with TestClient(app) as client:
        yield client, forwarded, store


JSON = {"Content-Type": "application/json"}
BAD_REQUESTS = {
    "another model": dict(json={"prompt": "x", "model": "dall-e-3"}),
    "text/plain": dict(content=b'{"prompt": "x"}', headers={"Content-Type": "text/plain"}),
    "no content type": dict(content=b'{"prompt": "x"}'),
    "a form": dict(content=b"prompt=x", headers={"Content-Type": "application/x-www-form-urlencoded"}),
    "malformed JSON": dict(content=b'{"prompt": ', headers=JSON),
    "a JSON array": dict(content=b'["x"]', headers=JSON),
    "an empty body": dict(content=b"", headers=JSON),
    "not UTF-8": dict(content=b'{"prompt": "\xff"}', headers=JSON),
    "an unsupported size": dict(json={"prompt": "x", "size": "1024x1024"}),
    "an unknown field": dict(json={"prompt": "x", "colour": "red"}),
    "a declared length over the limit": dict(content=b" " * (MAX_BODY_BYTES + 1), headers=JSON),
}


@pytest.mark.parametrize("path", [GENERATIONS, JOBS])
@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_generation_gets_the_servers_answer_from_the_gateway_too(server, gateway, path, case):
    client, forwarded, store = gateway
    expected = server.post(path, **BAD_REQUESTS[case])
    answer = client.post(path, **BAD_REQUESTS[case])
    assert expected.status_code in (404, 413, 422), expected.text
    assert (answer.status_code, answer.json()) == (expected.status_code, expected.json())
    assert forwarded == [] and store.created == []  # refused at the front door: not held, not queued


def test_the_gateway_takes_a_good_job_naming_the_served_model_or_none(gateway):
    client, forwarded, store = gateway
    for body in ({"prompt": "x", "model": SERVED}, {"prompt": "y"}):
        answer = client.post(JOBS, json=body, headers={"Content-Type": "application/vnd.api+json; charset=utf-8"})
        assert answer.status_code == 202, answer.text
    assert [job["prompt"] for job in store.created] == ["x", "y"]


def test_a_good_generation_is_forwarded_byte_for_byte(gateway):
    client, forwarded, store = gateway
    sent = b'{"prompt": "x",  "steps": 2.0}'  # as the client wrote it, not re-serialised
    assert client.post(GENERATIONS, content=sent, headers=JSON).status_code == 200
    assert forwarded == [sent]


def test_without_a_served_model_name_the_gateway_leaves_the_model_to_the_replica():
    """A gateway not told the served model (SD21_MODEL_NAME) must not refuse the right one."""
    forwarded: list = []
    app, store = gateway_app(forwarded, served=None)
    with TestClient(app) as client:
        assert client.post(GENERATIONS, json={"prompt": "x", "model": "anything"}).status_code == 200
        assert client.post(GENERATIONS, content=b'{"prompt": "x"}', headers={"Content-Type": "text/plain"}
                           ).status_code == 422  # the other checks still hold
    assert len(forwarded) == 1


def _post_streamed(app, path: str, chunk: bytes, chunks: int) -> tuple[int, int]:
    """POST a chunked body (no Content-Length) straight into the ASGI app; returns the
    status and how many chunks the app pulled before it answered."""
    pulled, answer = 0, {}

    async def run():
        done = asyncio.Event()

        async def receive():
            nonlocal pulled
            if pulled < chunks:
                pulled += 1
                return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
                 "headers": [(b"host", b"gateway"), (b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        await app(scope, receive, send)

    asyncio.run(run())
    return answer["status"], pulled


@pytest.mark.parametrize("path", [GENERATIONS, JOBS])
def test_a_huge_streamed_body_is_refused_before_the_gateway_reads_more_than_the_limit(path):
    """100 MiB sent without a Content-Length: one request must not take the gateway's memory
    (256 MiB limit) -- it stops reading one chunk past MAX_BODY_BYTES."""
    forwarded: list = []
    app, store = gateway_app(forwarded)
    chunk = b" " * (64 << 10)
    status, pulled = _post_streamed(app, path, chunk, chunks=(100 << 20) // len(chunk))
    assert status == 413
    assert pulled <= MAX_BODY_BYTES // len(chunk) + 1, f"read {pulled * len(chunk)} bytes"
    assert forwarded == [] and store.created == []


def test_the_gateway_checks_the_very_route_the_server_generates_on():
    from sd21.request_checks import GENERATIONS_PATH
    from sd21.server import API_PATH

    assert GENERATIONS_PATH == API_PATH == GENERATIONS
