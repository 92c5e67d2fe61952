"""Holding at scale to zero feeds the endpoint at its pace (issue 21, finding 3): a held
request whose client left is dropped and its place freed at once; held requests go out
no faster than ready replicas admit them, and a replica's 429 sends a held request back
to holding instead of to its client. Real sockets on loopback: the gateway in this
process, in front of a stand-in replica that admits queueSize+1 and counts generations."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.support.sd21_testlib import free_port, serving

API = "/v1/images/generations"
QUEUE_SIZE = 4  # the stand-in replica admits QUEUE_SIZE + 1: one on its device, the rest queued


class Replica:
    """A stand-in inference replica: admits QUEUE_SIZE + 1 requests at once and answers the
    rest 429 with Retry-After, as sd21.service does; records every prompt it generates. Its
    device starts only once it has refused one, so a refusal during the release is certain."""

    def __init__(self) -> None:
        self.admitted = 0
        self.refused = 0
        self.generated: list[str] = []
        self.found_full = asyncio.Event()  # bound to the replica's own loop at first use

    async def generate(self, request):
        prompt = json.loads(await request.body())["prompt"]
        if self.admitted >= QUEUE_SIZE + 1:
            self.refused += 1
            self.found_full.set()
            return JSONResponse({"error": {"type": "overloaded", "message": "queue is full"}}, status_code=429,
                                headers={"Retry-After": "1"})
        self.admitted += 1
        try:
            await self.found_full.wait()
            self.generated.append(prompt)
            return JSONResponse({"created": 0, "data": [{"b64_json": "", "seed": 0}]})
        finally:
            self.admitted -= 1

    def app(self) -> Starlette:
        return Starlette(routes=[Route(API, self.generate, methods=["POST"])])


def gateway(upstream: str, **settings):
    from sd21.gateway import GatewaySettings, create_app

    return create_app(GatewaySettings(upstream, request_timeout_s=60, cold_retry_after_s=60, **settings),
                      CollectorRegistry())


async def until(condition, timeout: float, what: str) -> None:
    """Wait for a condition of the gateway (another thread) to hold, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.02)


async def post(client: httpx.AsyncClient, url: str, prompt: str) -> httpx.Response:
    return await client.post(url + API, json={"prompt": prompt}, timeout=60)


async def connect_and_drop(url: str, prompt: str):
    """A client that sends its request and then leaves (returns the open writer to close)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps({"prompt": prompt}).encode()
    writer.write(f"POST {API} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    return writer


def test_a_client_that_leaves_while_held_frees_its_place_at_once_and_nothing_is_made_for_it():
    port = free_port()  # nothing listens yet: the Service has no ready endpoint
    app = gateway(f"http://127.0.0.1:{port}", hold_requests=1, hold_s=60, hold_poll_s=0.2)
    held = app.state.metrics.held
    replica = Replica()
    replica.found_full.set()  # one request: no refusal to wait for

    async def scenario(url: str) -> httpx.Response:
        leaver = await connect_and_drop(url, "left")
        await until(lambda: held._value.get() == 1, 10, "the first client held")
        leaver.close()
        await until(lambda: held._value.get() == 0, 10, "the place of the client that left freed")
        async with httpx.AsyncClient() as client:
            waiting = asyncio.create_task(post(client, url, "stayed"))
            await until(lambda: held._value.get() == 1, 10, "the next client held in the freed place")
            with serving(replica.app(), port=port):
                return await waiting

    with serving(app) as url:
        answer = asyncio.run(scenario(url))
    assert answer.status_code == 200, answer.text
    assert replica.generated == ["stayed"]  # nothing for the client that left


def test_a_held_request_a_replica_refuses_for_overload_goes_back_to_holding():
    """Within the hold window a 429 is not the client's answer: it waits for a place."""
    answers = iter([httpx.ConnectError("refused"),
                    httpx.Response(429, headers={"Retry-After": "1", "content-type": "application/json"},
                                   stream=httpx.ByteStream(b'{"error": {"type": "overloaded", "message": "full"}}')),
                    httpx.Response(200, headers={"content-type": "application/json"},
                                   stream=httpx.ByteStream(b'{"ok": 1}'))])
    seen = []

    def upstream(request):
        seen.append(request.content)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise httpx.ConnectError("refused", request=request)
        return answer

    from sd21.gateway import GatewaySettings, create_app

    app = create_app(GatewaySettings("http://upstream.invalid", request_timeout_s=60, hold_requests=1, hold_s=30,
                                     hold_poll_s=0.05), CollectorRegistry(), transport=httpx.MockTransport(upstream))
    with TestClient(app) as client:
        answer = client.post(API, json={"prompt": "x"})
    assert (answer.status_code, answer.json()) == (200, {"ok": 1})
    assert len(seen) == 3
    assert app.state.metrics.held._value.get() == 0


def test_a_hundred_clients_at_zero_get_an_image_or_a_503_at_the_bound_and_nobody_who_waited_gets_429():
    """100 clients while no replica is ready, 32 held (some leave), then a replica that admits
    QUEUE_SIZE + 1: everyone still connected gets an image; nothing is made for those who left."""
    port = free_port()
    app = gateway(f"http://127.0.0.1:{port}", hold_requests=32, hold_s=60, hold_poll_s=0.2, admit_grace_s=0.2)
    held = app.state.metrics.held
    replica = Replica()

    async def scenario(url: str):
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200)) as client:
            stayed = [asyncio.create_task(post(client, url, f"early-{n}")) for n in range(24)]
            leavers = [await connect_and_drop(url, f"left-{n}") for n in range(8)]
            await until(lambda: held._value.get() == 32, 30, "32 clients held")
            over = await asyncio.gather(*(post(client, url, f"over-{n}") for n in range(60)))
            for leaver in leavers:
                leaver.close()
            await until(lambda: held._value.get() == 24, 10, "the places of the 8 who left freed")
            stayed += [asyncio.create_task(post(client, url, f"late-{n}")) for n in range(8)]
            await until(lambda: held._value.get() == 32, 10, "8 more held in the freed places")
            with serving(replica.app(), port=port):  # a replica is ready
                answers = await asyncio.gather(*stayed)
            return over, answers

    with serving(app) as url:
        over, answers = asyncio.run(scenario(url))
    for answer in over:  # at the bound: told at once when to come back
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "60", answer.text
        assert answer.json()["error"]["type"] == "warming_up"
    assert [answer.status_code for answer in answers] == [200] * 32, [a.text for a in answers if a.status_code != 200]
    assert sorted(replica.generated) == sorted([f"early-{n}" for n in range(24)] + [f"late-{n}" for n in range(8)])
    assert replica.refused >= 1  # the replica was full at least once: that 429 went back to holding
    assert held._value.get() == 0
