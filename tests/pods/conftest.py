"""The pods the app deploys, taken from the synthesized output, run under the kubelet harness."""
from __future__ import annotations

import os

import pytest

from k8s_charts import rendering
from tests.pods.kubelet import Adaptations, bubblewrap_available, pod_spec

# CI must run these: a missing bwrap fails there instead of skipping.
MUST_RUN = os.environ.get("CI") == "true"


@pytest.fixture(scope="session", autouse=True)
def bubblewrap():
    problem = bubblewrap_available()
    if problem:
        if MUST_RUN:
            pytest.fail(problem)
        pytest.skip(problem)


def workload_object(objects: list[dict], kind: str, name_prefix: str) -> dict:
    (match,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name_prefix)]
    return match


@pytest.fixture(scope="session")
def deployed(synthesized, application) -> list[dict]:
    """Every Kubernetes object of the workload stack, as CloudFormation would apply it."""
    return rendering.all_objects(rendering.from_template_file(synthesized.template_file(application.workload)))


@pytest.fixture(scope="session")
def compile_pod_spec(deployed) -> dict:
    return pod_spec(workload_object(deployed, "Job", "sd21-compile-"))


@pytest.fixture(scope="session")
def inference_pod_spec(deployed) -> dict:
    return pod_spec(workload_object(deployed, "Deployment", "sd21-inference"))


@pytest.fixture(scope="session")
def adapt(s3_env):
    """adapt(**changes) -> the harness's adaptations for this test session's loopback S3."""
    from tests.conftest import TEST_BUCKET

    def make(**changes) -> Adaptations:
        return Adaptations(**{"s3_env": s3_env, "bucket": TEST_BUCKET, **changes})

    return make
