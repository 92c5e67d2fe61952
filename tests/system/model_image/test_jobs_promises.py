"""The jobs path under the permissions it is deployed with, in process: S3, SQS and SNS are
small stand-ins that answer as AWS answers our roles (a missing key is 403 to a caller
without s3:ListBucket), and the device is a stand-in service."""
from __future__ import annotations

import asyncio
import json

import pytest
from botocore.exceptions import ClientError

from sd21.jobs import JobStore, JobsSettings, JobWorker
from sd21.service import Rejected

BUCKET = "models"


def client_error(code: str, status: int, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class S3WithoutListBucket:
    """S3 as our roles see it: they may read every key under jobs/ but not list the bucket
    unconditioned, so S3 answers a missing key with 403 AccessDenied, never NoSuchKey."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket, Key, Body, ContentType):  # noqa: N803 - boto3's names
        self.objects[Key] = Body

    def get_object(self, *, Bucket, Key):  # noqa: N803
        if Key not in self.objects:
            raise client_error("AccessDenied", 403, "GetObject")
        body = self.objects[Key]
        return {"Body": type("Body", (), {"read": lambda self: body})()}

    def generate_presigned_url(self, operation, ExpiresIn, Params):  # noqa: N803
        return f"https://{Params['Bucket']}.example/{Params['Key']}?expires={ExpiresIn}"


class Recorder:
    """SQS or SNS: every call recorded; receive answers from `messages`."""

    def __init__(self, messages=()):
        self.calls: list[tuple[str, dict]] = []
        self.messages = list(messages)

    def __getattr__(self, operation):
        def call(**params):
            self.calls.append((operation, params))
            if operation == "receive_message":
                found, self.messages = self.messages, []
                return {"Messages": found}
            return {}
        return call

    def published(self) -> list[dict]:
        return [json.loads(p["Message"]) for op, p in self.calls if op == "publish"]


class RefusingService:
    is_ready, queued, running = True, 0, 0

    def __init__(self, refusal: Rejected):
        self.refusal = refusal

    async def generate(self, params):
        raise self.refusal


def settings(max_attempts: int = 3) -> JobsSettings:
    return JobsSettings("https://sqs/jobs", "https://sqs/dead", "arn:aws:sns:us-east-1:000000000000:jobs", BUCKET,
                        max_attempts=max_attempts)


def queued_job(store: JobStore) -> str:
    return store.create({"prompt": "a lighthouse", "steps": 2, "seed": 0})["id"]


def message(job_id: str, attempt: int) -> dict:
    return {"Body": json.dumps({"id": job_id}), "ReceiptHandle": f"r{attempt}",
            "Attributes": {"ApproximateReceiveCount": str(attempt)}}


def test_a_queued_job_reads_queued_when_s3_denies_its_missing_status():
    store = JobStore(settings(), s3=S3WithoutListBucket())
    job_id = queued_job(store)
    assert store.describe(job_id)["status"] == "queued"


def test_an_unknown_job_is_none_when_s3_denies_its_missing_request():
    store = JobStore(settings(), s3=S3WithoutListBucket())
    assert store.describe("0" * 32) is None


def test_other_s3_errors_are_not_taken_for_a_missing_key():
    class Throttled(S3WithoutListBucket):
        def get_object(self, **params):
            raise client_error("SlowDown", 503, "GetObject")

    store = JobStore(settings(), s3=Throttled())
    with pytest.raises(ClientError, match="SlowDown"):
        store.status("0" * 32)


def test_a_worker_runs_a_job_whose_status_was_never_written():
    """The worker's first read is the status of a job that has none yet (403 under our IAM)."""
    from PIL import Image

    class Painting(RefusingService):
        async def generate(self, params):
            return Image.new("RGB", (8, 8))

    s3, sqs, sns = S3WithoutListBucket(), Recorder(), Recorder()
    store = JobStore(settings(), s3=s3)
    job_id = queued_job(store)
    worker = JobWorker(settings(), Painting(None), store=store, sqs=sqs, sns=sns)
    asyncio.run(worker.handle(message(job_id, 1)))
    assert store.describe(job_id)["status"] == "succeeded"
    assert sns.published() == [{"id": job_id, "status": "succeeded", "bucket": BUCKET,
                                 "key": f"jobs/{job_id}/image.png"}]


def test_a_job_failing_its_last_attempt_is_announced_once_with_its_error():
    s3, sqs, sns = S3WithoutListBucket(), Recorder(), Recorder()
    store = JobStore(settings(), s3=s3)
    job_id = queued_job(store)
    worker = JobWorker(settings(max_attempts=2), RefusingService(Rejected(500, "internal", "the device raised")),
                       store=store, sqs=sqs, sns=sns)
    asyncio.run(worker.handle(message(job_id, 1)))
    assert sns.published() == [] and store.describe(job_id)["status"] == "queued"
    asyncio.run(worker.handle(message(job_id, 2)))
    assert sns.published() == [{"id": job_id, "status": "failed", "error": "internal: the device raised"}]
    assert store.describe(job_id)["error"] == "internal: the device raised"
    # SQS then moves it to the dead-letter queue; the sweep finds it failed and says nothing more.
    sqs.messages = [message(job_id, 3)]
    worker._sweep_dead_letters()
    assert len(sns.published()) == 1


def test_a_job_dead_lettered_after_an_unhealthy_device_is_announced_with_that_error():
    s3, sqs, sns = S3WithoutListBucket(), Recorder(), Recorder()
    store = JobStore(settings(), s3=s3)
    job_id = queued_job(store)
    refusal = Rejected(503, "unhealthy", "NeuronCore 0 stopped answering")
    worker = JobWorker(settings(max_attempts=1), RefusingService(refusal), store=store, sqs=sqs, sns=sns)
    asyncio.run(worker.handle(message(job_id, 1)))
    assert ("change_message_visibility", {"QueueUrl": "https://sqs/jobs", "ReceiptHandle": "r1",
                                          "VisibilityTimeout": 0}) in sqs.calls  # handed back at once
    sqs.messages = [message(job_id, 2)]
    worker._sweep_dead_letters()
    expected = "unhealthy: NeuronCore 0 stopped answering"
    assert sns.published() == [{"id": job_id, "status": "failed", "error": expected}]
    assert store.describe(job_id) | {"updated": None} == {
        "id": job_id, "status": "failed", "created": store.request(job_id)["created"], "updated": None,
        "seed": 0, "attempt": 1, "error": expected}


def test_a_result_url_is_signed_with_signature_version_4_and_lives_as_the_setting_says(monkeypatch):
    """A presigned URL of the old form (AWSAccessKeyId/Signature/Expires) is refused by buckets
    made since mid-2020; the link lives jobUrlExpiresSeconds. No request is sent: signing is local."""
    from urllib.parse import parse_qs, urlparse

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    store = JobStore(JobsSettings("https://sqs/jobs", None, None, BUCKET, url_expires_s=900))
    query = parse_qs(urlparse(store.image_url("0" * 32)).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["900"]
    assert "Signature" not in query and "AWSAccessKeyId" not in query
