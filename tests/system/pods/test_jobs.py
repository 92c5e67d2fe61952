"""Async jobs, with the gateway and the servers run from their specs against SQS, SNS and
S3 on loopback (moto): accepted at zero replicas, done once a server starts; redelivered
when a server is killed mid-job and done once; a job that always fails ends up in the
dead-letter queue and reads `failed` with the reason."""
from __future__ import annotations

import io
import json
import signal
import time
import uuid

import boto3
import httpx
import pytest
from PIL import Image

from tests.support.pods.cluster import start_server, until_ready, url_of
from tests.conftest import job_resources
from tests.support.pods.service import Service

JOBS = "/v1/images/jobs"


def listen(topic_arn: str) -> str:
    """An SQS queue subscribed to the finished-jobs topic: what a client's consumer would get."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName=f"listener-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def announcements(url: str) -> list[dict]:
    sqs, found = boto3.client("sqs"), []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return found
        found += [json.loads(m["Body"]) for m in messages]


def wait_for(base: str, job_id: str, statuses: set[str], timeout: float) -> dict:
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        seen = httpx.get(f"{base}{JOBS}/{job_id}", timeout=10).json()
        if seen.get("status") in statuses:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {statuses}: {seen}")


def submit(base: str, **body) -> dict:
    response = httpx.post(base + JOBS, json={"prompt": "a lighthouse at dusk", "steps": 2, **body}, timeout=30)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"{JOBS}/{response.json()['id']}"
    return response.json()


def test_a_job_submitted_at_zero_replicas_completes_once_a_server_starts(
        inference_pod, staged, adapt, gateway_before):
    resources = job_resources(f"zero-{uuid.uuid4().hex[:6]}")
    listener = listen(resources["SD21_JOBS_TOPIC_ARN"])
    service = Service([])  # no replica at all
    gateway = gateway_before(service.url, jobs=resources)
    job = submit(url_of(gateway), seed=11)
    assert httpx.get(f"{url_of(gateway)}{JOBS}/{job['id']}").json()["status"] == "queued"
    server = start_server(inference_pod, staged, adapt, jobs=resources)
    try:
        service.add(server)
        started = time.monotonic()
        done = wait_for(url_of(gateway), job["id"], {"succeeded", "failed"}, timeout=60)
        assert done["status"] == "succeeded" and done["seed"] == 11, done
        image = Image.open(io.BytesIO(httpx.get(done["url"], timeout=30).content))
        assert image.size == (512, 512)
        assert [a["id"] for a in announcements(listener)] == [job["id"]]
        print(f"\njob accepted at zero replicas, done {time.monotonic() - started:.1f}s after the server was ready")
    finally:
        service.close()
        server.kill()


def test_a_job_whose_server_is_killed_is_redelivered_and_done_once(inference_pod, staged, adapt):
    # A short visibility (the spec's is twice the request timeout) so the redelivery is quick.
    resources = {**job_resources(f"kill-{uuid.uuid4().hex[:6]}", visibility_s=5), "SD21_JOBS_VISIBILITY_S": "5"}
    listener = listen(resources["SD21_JOBS_TOPIC_ARN"])
    # The first server's device hangs on the job (the warm-up passes), so the job is certainly
    # mid-generation when the server is killed, however fast or slow this machine is.
    first = start_server(inference_pod, staged, adapt, jobs=resources, extra_env={"SD21_CPU_FAULT": "hang-after:1"})
    second = None
    try:
        job = submit(url_of(first), seed=5)
        wait_for(url_of(first), job["id"], {"running"}, timeout=30)
        # The second replica starts meanwhile: the message stays invisible while the first lives.
        second = start_server(inference_pod, staged, adapt, jobs=resources, wait=False)
        first.signal(signal.SIGKILL)  # a spot interruption, without the goodbye
        first.wait(timeout=30)
        until_ready(second)
        done = wait_for(url_of(second), job["id"], {"succeeded", "failed"}, timeout=120)
        assert done["status"] == "succeeded" and done["attempt"] == 2, done
        assert [a["id"] for a in announcements(listener)] == [job["id"]]  # once
        # Deleted from the queue, not waiting to come back: neither visible nor in flight.
        sqs, deadline = boto3.client("sqs"), time.monotonic() + 10
        while True:
            attributes = sqs.get_queue_attributes(QueueUrl=resources["SD21_JOBS_QUEUE_URL"],
                                                  AttributeNames=["All"])["Attributes"]
            counts = (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"])
            if counts == ("0", "0") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counts == ("0", "0"), attributes
        # ... and nothing comes back: the job stays done, announced once.
        assert wait_for(url_of(second), job["id"], {"succeeded"}, timeout=1)["attempt"] == 2
        assert announcements(listener) == []
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_a_job_that_always_fails_reads_failed_with_its_reason_and_is_dead_lettered(inference_pod, staged, adapt):
    resources = {**job_resources(f"poison-{uuid.uuid4().hex[:6]}", max_attempts=3, visibility_s=2),
                 "SD21_JOBS_VISIBILITY_S": "10", "SD21_JOBS_MAX_ATTEMPTS": "3"}
    server = start_server(inference_pod, staged, adapt, jobs=resources, extra_env={
        "SD21_CPU_FAULT": "error-after:1",              # every generation after the warm-up raises
        "SD21_MAX_CONSECUTIVE_FAILURES": "100"})        # ... without the server giving up on its device
    try:
        job = submit(url_of(server))
        failed = wait_for(url_of(server), job["id"], {"failed"}, timeout=60)
        assert failed["attempt"] == 3 and "internal" in failed["error"], failed
        sqs, deadline = boto3.client("sqs"), time.monotonic() + 30
        while time.monotonic() < deadline:
            dead = sqs.get_queue_attributes(QueueUrl=resources["SD21_JOBS_DLQ_URL"],
                                            AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
            if dead["ApproximateNumberOfMessages"] == "1":
                break
            time.sleep(0.5)
        else:
            pytest.fail("the job never reached the dead-letter queue")
        missing = httpx.get(f"{url_of(server)}{JOBS}/{'0' * 32}")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    finally:
        server.kill()
