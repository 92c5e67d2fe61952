"""Our code under the roles as synthesized (tests/support/pods/iam.py): S3, SQS and SNS answer as AWS
answers each role, a missing key included (403 without an unconditioned s3:ListBucket), and a
statement taken out of a synthesized policy makes the pod that needs it fail."""
from __future__ import annotations

import uuid

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import TEST_BUCKET, job_resources
from tests.support.pods.cluster import url_of
from tests.support.pods.kubelet import Pod, pod_spec

JOBS = "/v1/images/jobs"


@pytest.fixture(scope="session")
def gateway_spec(zero) -> dict:
    (gateway,) = [o for o in zero.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "sd21-gateway"]
    return pod_spec(gateway)


@pytest.fixture(params=["serve", "gateway"])
def role_s3(request, roles, zero_roles, inference_pod_spec, gateway_spec):
    """(S3 client through the role's proxy, the job resources): the serve role (server pods) or the
    gateway role (scale to zero), each as its pod's synthesized spec names it."""
    resources = job_resources(f"iam-{uuid.uuid4().hex[:6]}")
    enforcer, spec = (roles, inference_pod_spec) if request.param == "serve" else (zero_roles, gateway_spec)
    url = enforcer.endpoint(spec, {"SD21_BUCKET": TEST_BUCKET, **resources})
    return boto3.client("s3", endpoint_url=url), resources


def _code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def test_a_missing_job_key_answers_403_access_denied_to_our_roles_as_s3_does(role_s3):
    s3, _ = role_s3
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=TEST_BUCKET, Key=f"jobs/{uuid.uuid4().hex}/status.json")
    assert _code(missing.value) == "AccessDenied"  # moto alone says NoSuchKey
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket=TEST_BUCKET, Key=f"jobs/{uuid.uuid4().hex}/status.json")
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_our_roles_reach_nothing_outside_their_prefixes(role_s3):
    s3, _ = role_s3
    for call in (lambda: s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="jobs/"),
                 lambda: s3.list_objects_v2(Bucket=TEST_BUCKET),
                 lambda: s3.put_object(Bucket=TEST_BUCKET, Key="models/sd21-base-512/x", Body=b"x"),
                 lambda: s3.delete_object(Bucket=TEST_BUCKET, Key="jobs/x/request.json")):
        with pytest.raises(ClientError) as denied:
            call()
        assert _code(denied.value) == "AccessDenied"


def test_a_queued_job_whose_status_is_not_written_reads_queued_under_the_role(role_s3):
    """sd21.jobs.JobStore in this process, through the role's proxy: a job just created has a
    request and no status yet (the worker has not seen it), and an unknown job has neither."""
    from sd21.jobs import JobsSettings, JobStore

    s3, resources = role_s3
    store = JobStore(JobsSettings(resources["SD21_JOBS_QUEUE_URL"], resources["SD21_JOBS_DLQ_URL"],
                                  resources["SD21_JOBS_TOPIC_ARN"], TEST_BUCKET), s3=s3)
    job = store.create({"prompt": "a lighthouse", "seed": 3})
    assert store.describe(job["id"])["status"] == "queued"
    assert store.describe(uuid.uuid4().hex) is None


def test_the_gateway_pod_answers_queued_and_not_found_instead_of_500(gateway_before):
    """The gateway pod from its spec, under its synthesized role, with no replica to work the job."""
    resources = job_resources(f"iam-gw-{uuid.uuid4().hex[:6]}")
    gateway = gateway_before("http://127.0.0.1:9", jobs=resources)
    submitted = httpx.post(url_of(gateway) + JOBS, json={"prompt": "a lighthouse at dusk", "steps": 2}, timeout=30)
    assert submitted.status_code == 202, submitted.text
    read = httpx.get(f"{url_of(gateway)}{JOBS}/{submitted.json()['id']}", timeout=30)
    assert read.status_code == 200 and read.json()["status"] == "queued", read.text
    unknown = httpx.get(f"{url_of(gateway)}{JOBS}/{uuid.uuid4().hex}", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found", unknown.text


# --- a statement taken out of a synthesized policy: the pod that needs it fails -----------------

def test_the_gateway_without_send_jobs_refuses_the_job_with_503(gateway_before, zero_roles):
    resources = job_resources(f"iam-nosend-{uuid.uuid4().hex[:6]}")
    gateway = gateway_before("http://127.0.0.1:9", jobs=resources, roles=zero_roles.without("SendJobs"))
    refused = httpx.post(url_of(gateway) + JOBS, json={"prompt": "a lighthouse at dusk", "steps": 2}, timeout=30)
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "not_ready", refused.text


def test_stage_without_read_model_fails_with_access_denied(inference_pod_spec, compiled, adapt, roles, pods_root):
    pod = Pod(inference_pod_spec, pods_root)
    try:
        stage = pod.container("stage", adapt(extra_env={"SD21_MODEL_VERSION": compiled},
                                             roles=roles.without("ReadModel")))
        result = stage.run(timeout=120)
        assert result.returncode != 0, result.output
        assert "AccessDenied" in result.output, result.output
        published = [p.name for p in pod.volumes["model"].iterdir() if not p.name.startswith(".")]
        assert published == [], published  # nothing half-staged (only its own report)
    finally:
        pod.cleanup()
