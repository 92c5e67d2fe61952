"""Asynchronous jobs: accepted when no replica exists, done when a device is idle.

POST /v1/images/jobs (the generation body) writes `jobs/<id>/request.json` to the
model bucket and sends `{"id": ...}` to an SQS queue: 202 with the job id and a
Location. Inference pods take a message only while their device is idle (sync
requests keep priority), keep it invisible while they work, write the PNG to
`jobs/<id>/image.png` and `status.json`, announce the job on SNS and delete the
message. A pod that dies mid-job (spot interruption, kill -9) leaves the message to
reappear and be done again: the key and the seed are the job's, so the client sees
one result. After the queue's maxReceiveCount failed attempts SQS moves the message
to the dead-letter queue; the pods mark such jobs failed. GET /v1/images/jobs/<id>
reads the status, with a short-lived presigned URL once the image exists.

The enqueuing side (`JobsApi`) runs in the server, and in the gateway at scale to
zero; the worker side (`JobWorker`) runs in the server. Configured by env
(sd21.contract.JobsEnv): off while no queue is named.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

from .contract import JOBS_PREFIX, JobsEnv
from .env import progress
from .s3 import is_access_denied, is_not_found

PREFIX = JOBS_PREFIX
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
JOBS_PATH = "/v1/images/jobs"


@dataclass(frozen=True)
class JobsSettings:
    queue_url: str
    dead_letter_url: Optional[str]
    topic_arn: Optional[str]
    bucket: str
    max_attempts: int = JobsEnv.max_attempts
    visibility_s: int = JobsEnv.visibility_s
    url_expires_s: int = JobsEnv.url_expires_s

    @classmethod
    def of(cls, env: JobsEnv) -> Optional["JobsSettings"]:
        """None while no queue is named (JobsEnv.from_env checked the rest: a queue has a bucket)."""
        if not env.queue_url:
            return None
        return cls(env.queue_url, env.dead_letter_url, env.topic_arn, env.bucket, env.max_attempts,
                   env.visibility_s, env.url_expires_s)


def presigning_s3_client():
    """An S3 client whose presigned URLs carry Signature Version 4: boto3 1.44.8's default S3
    client presigns with the old AWSAccessKeyId/Signature/Expires form (seen here), which S3
    refuses for buckets created since 2020-06-24 (AWS re:Post, "Amazon S3 SigV2 deprecation";
    not checked against AWS from here)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(signature_version="s3v4"))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class JobStore:
    """Requests, status and results under jobs/<id>/ in the bucket."""

    def __init__(self, settings: JobsSettings, s3=None):
        self.settings = settings
        self.s3 = s3 or presigning_s3_client()

    def key(self, job_id: str, name: str) -> str:
        return f"{PREFIX}{job_id}/{name}"

    def _put_json(self, job_id: str, name: str, document: dict) -> None:
        self.s3.put_object(Bucket=self.settings.bucket, Key=self.key(job_id, name),
                           Body=json.dumps(document).encode(), ContentType="application/json")

    def _get_json(self, job_id: str, name: str) -> Optional[dict]:
        try:
            answer = self.s3.get_object(Bucket=self.settings.bucket, Key=self.key(job_id, name))
        except Exception as error:  # noqa: BLE001 - classified below
            # Our roles may read every key under jobs/ but not list the bucket unconditioned, and
            # S3 answers a GetObject of a missing key with 403 AccessDenied to a caller without
            # s3:ListBucket (GetObject API reference; sd21.s3.object_exists). So here a 403 is
            # a key not written yet (a queued job's status), exactly like NoSuchKey.
            if is_not_found(error) or is_access_denied(error):
                return None
            raise
        return json.loads(answer["Body"].read())

    def create(self, request: dict) -> dict:
        job_id = uuid.uuid4().hex
        document = {"id": job_id, "request": request, "created": _now()}
        self._put_json(job_id, "request.json", document)
        return document

    def request(self, job_id: str) -> Optional[dict]:
        return self._get_json(job_id, "request.json")

    def set_status(self, job_id: str, status: str, **fields) -> None:
        self._put_json(job_id, "status.json", {"id": job_id, "status": status, "updated": _now(), **fields})

    def status(self, job_id: str) -> Optional[dict]:
        return self._get_json(job_id, "status.json")

    def put_image(self, job_id: str, png: bytes) -> None:
        self.s3.put_object(Bucket=self.settings.bucket, Key=self.key(job_id, "image.png"), Body=png,
                           ContentType="image/png")

    def image_url(self, job_id: str) -> str:
        return self.s3.generate_presigned_url("get_object", ExpiresIn=self.settings.url_expires_s, Params={
            "Bucket": self.settings.bucket, "Key": self.key(job_id, "image.png")})

    def describe(self, job_id: str) -> Optional[dict]:
        """What GET /v1/images/jobs/<id> answers; None for an unknown job."""
        request = self.request(job_id)
        if request is None:
            return None
        status = self.status(job_id) or {"status": "queued", "updated": request["created"]}
        answer = {"id": job_id, "status": status["status"], "created": request["created"],
                  "updated": status["updated"], "seed": request["request"]["seed"]}
        for name in ("attempt", "error"):
            if name in status:
                answer[name] = status[name]
        if status["status"] == "succeeded":
            answer.update(url=self.image_url(job_id), url_expires_in=self.settings.url_expires_s)
        return answer


class JobsApi:
    """The HTTP side: enqueue and read. Routes are plain Starlette endpoints."""

    def __init__(self, settings: JobsSettings, store: Optional[JobStore] = None, sqs=None,
                 count: Callable[[str], None] = lambda kind: None):
        import boto3

        self.settings, self.store = settings, store or JobStore(settings)
        self.sqs = sqs or boto3.client("sqs")
        self.count = count

    async def enqueue(self, body):
        """A validated GenerationRequest (sd21.request_checks, by whichever app received it) to the queue."""
        from starlette.responses import JSONResponse

        from .errors import error_response

        fields = body.model_dump(exclude_none=True, exclude={"response_format", "model", "user", "quality",
                                                            "output_format", "n"})
        fields["seed"] = body.seed if body.seed is not None else random.randrange(2**32)  # fixed: one result
        document = await asyncio.to_thread(self.store.create, fields)
        try:
            await asyncio.to_thread(self.sqs.send_message, QueueUrl=self.settings.queue_url,
                                    MessageBody=json.dumps({"id": document["id"]}))
        except Exception as error:  # noqa: BLE001 - the client must know it was not queued
            return error_response(503, "not_ready", f"the job queue is unavailable ({type(error).__name__}); "
                                                    "retry", retry_after=5)
        location = f"{JOBS_PATH}/{document['id']}"
        return JSONResponse({"id": document["id"], "status": "queued", "seed": fields["seed"],
                             "location": location}, status_code=202, headers={"Location": location})

    async def read(self, request):
        return await self.describe(request.path_params["job_id"])

    async def describe(self, job_id: str):
        from starlette.responses import JSONResponse

        from .errors import error_response

        answer = await asyncio.to_thread(self.store.describe, job_id) if JOB_ID.match(job_id) else None
        if answer is None:
            self.count("not_found")
            return error_response(404, "not_found", f"no job {job_id!r}")
        return JSONResponse(answer)

    def routes(self) -> list:
        from starlette.routing import Route

        return [Route(JOBS_PATH + "/{job_id}", self.read, methods=["GET"])]


class JobWorker:
    """Takes jobs while the service's device is idle; one at a time; never ahead of sync requests."""

    def __init__(self, settings: JobsSettings, service, store: Optional[JobStore] = None, sqs=None, sns=None,
                 poll_s: int = 2):
        import boto3

        self.settings, self.service = settings, service
        self.store = store or JobStore(settings)
        self.sqs = sqs or boto3.client("sqs")
        self.sns = sns or (boto3.client("sns") if settings.topic_arn else None)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._last_sweep = 0.0

    def idle(self) -> bool:
        service = self.service
        return service.is_ready and service.queued == 0 and service.running == 0

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        while not self._stop.is_set():
            try:
                self._sweep_dead_letters()
                if not self.idle():
                    self._stop.wait(0.2)
                    continue
                messages = self.sqs.receive_message(
                    QueueUrl=self.settings.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=self.poll_s,
                    AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
                for message in messages:
                    loop.run_until_complete(self.handle(message))
            except Exception as error:  # noqa: BLE001 - the worker outlives a bad poll
                progress(f"warning: job worker: {type(error).__name__}: {error}")
                self._stop.wait(5)
        loop.close()

    async def handle(self, message: dict) -> None:
        from .pipeline import GenerationParams
        from .images import png_bytes
        from .service import Rejected

        job_id = json.loads(message["Body"])["id"]
        receipt = message["ReceiptHandle"]
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if (self.store.status(job_id) or {}).get("status") == "succeeded":  # done before its pod died
            self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=receipt)
            return
        request = self.store.request(job_id)
        if request is None:  # nothing to do: the request expired with the jobs prefix
            self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=receipt)
            return
        self.store.set_status(job_id, "running", attempt=attempt)
        fields = request["request"]
        params = GenerationParams.of(fields, fields["seed"])
        heartbeat = threading.Event()
        threading.Thread(target=self._keep_invisible, args=(receipt, heartbeat), daemon=True).start()
        try:
            image = await self.service.generate(params)
        except Rejected as refusal:
            reason = f"{refusal.kind}: {refusal.message}"
            if refusal.kind in ("unhealthy", "draining", "overloaded", "not_ready"):
                # Not the job's fault: hand it back now for another replica. The reason stays
                # with the job, so a job that ends in the dead-letter queue says what happened.
                self.store.set_status(job_id, "queued", attempt=attempt, error=reason)
                self.sqs.change_message_visibility(QueueUrl=self.settings.queue_url, ReceiptHandle=receipt,
                                                   VisibilityTimeout=0)
                return
            if attempt < self.settings.max_attempts:
                self.store.set_status(job_id, "queued", attempt=attempt, error=reason)
                return  # left to reappear
            self.store.set_status(job_id, "failed", attempt=attempt, error=reason)
            self._announce(job_id, "failed", error=reason)
            return  # SQS moves it to the dead-letter queue at its next receive; the sweep skips it then
        finally:
            heartbeat.set()
        self.store.put_image(job_id, png_bytes(image))
        self.store.set_status(job_id, "succeeded", attempt=attempt)
        self._announce(job_id, "succeeded", bucket=self.settings.bucket, key=self.store.key(job_id, "image.png"))
        self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=receipt)

    def _keep_invisible(self, receipt: str, done: threading.Event) -> None:
        while not done.wait(self.settings.visibility_s / 3):
            try:
                self.sqs.change_message_visibility(QueueUrl=self.settings.queue_url, ReceiptHandle=receipt,
                                                   VisibilityTimeout=self.settings.visibility_s)
            except Exception as error:  # noqa: BLE001
                progress(f"warning: could not extend a job's visibility: {error}")

    def _sweep_dead_letters(self) -> None:
        """Jobs SQS gave up on (their pods died every time) read `failed`, once a minute."""
        if not self.settings.dead_letter_url or time.monotonic() - self._last_sweep < 60:
            return
        self._last_sweep = time.monotonic()
        answer = self.sqs.receive_message(QueueUrl=self.settings.dead_letter_url, MaxNumberOfMessages=10,
                                          VisibilityTimeout=43200, AttributeNames=["ApproximateReceiveCount"])
        for message in answer.get("Messages", []):
            job_id = json.loads(message["Body"])["id"]
            status = self.store.status(job_id) or {}
            if status.get("status") not in ("succeeded", "failed"):
                # The last error a replica recorded (e.g. an unhealthy device), else what SQS knows.
                error = status.get("error") or f"no replica finished it in {self.settings.max_attempts} attempts"
                self.store.set_status(job_id, "failed", attempt=status.get("attempt", self.settings.max_attempts),
                                      error=error)
                self._announce(job_id, "failed", error=error)

    def _announce(self, job_id: str, status: str, **fields) -> None:
        """Every terminal state goes out once on the topic (when one is configured)."""
        if self.sns is not None:
            self.sns.publish(TopicArn=self.settings.topic_arn,
                             Message=json.dumps({"id": job_id, "status": status, **fields}))

    def start(self) -> "JobWorker":
        threading.Thread(target=self.run, name="job-worker", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
