"""The pods the app deploys, taken from the synthesized output, run under the kubelet harness."""
from __future__ import annotations

import os

import pytest

import signal
import subprocess
import sys

from tools import rendering
from tests.conftest import job_resources
from tests.support.pods.cluster import env_of
from tools.dev.localstack import free_port
from tests.support.pods.iam import RoleProxies
from tests.support.pods.kubelet import Adaptations, Pod, bubblewrap_available, find_container, pod_spec

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
def session_jobs(s3_env) -> dict[str, str]:
    return job_resources("sd21-session-jobs")


# --- each pod's role, as synthesized, enforced in front of the loopback AWS (iam.py) ---------

_ENFORCERS: list[RoleProxies] = []


def _enforce(outdir, s3_env) -> RoleProxies:
    roles = RoleProxies(outdir, s3_env["AWS_ENDPOINT_URL_S3"], s3_env["AWS_DEFAULT_REGION"])
    _ENFORCERS.append(roles)
    return roles


@pytest.fixture(autouse=True)
def no_harness_problems():
    """A request the proxy could not decide (unmapped, unresolvable token, unknown operator) fails
    the test that made it, even when the pod swallowed the 500."""
    yield
    problems = [problem for roles in _ENFORCERS for problem in roles.problems]
    denials = sorted({denial for roles in _ENFORCERS for denial in roles.denials})
    for roles in _ENFORCERS:
        roles.problems.clear()
        roles.denials.clear()
    if denials:  # shown with -s or on failure: where a pod met its role's limits
        print("\nIAM denied: " + "; ".join(denials))
    assert not problems, "the IAM harness could not decide:\n" + "\n".join(problems)


@pytest.fixture(scope="session")
def roles(synthesized, s3_env):
    """The default app's roles (minReplicas >= 1)."""
    enforcer = _enforce(synthesized.outdir, s3_env)
    yield enforcer
    enforcer.close()


@pytest.fixture(scope="session")
def zero_roles(zero, s3_env):
    """The scale-to-zero app's roles (the gateway's among them)."""
    enforcer = _enforce(zero.outdir, s3_env)
    yield enforcer
    enforcer.close()


@pytest.fixture(scope="session")
def mirror_roles(weights_mirror, s3_env, tmp_path_factory):
    """The roles of the app deployed with `weightsSource` = the test mirror: the compile role may read
    the mirror only then (stacks/storage/access.py), and the harness gives the Job that source."""
    import aws_cdk as cdk

    import app as cdk_app
    from stacks.application import build_application
    from stacks.settings import Settings

    # The application stacks only: the roles live there (cdk-nag is the default synth's business).
    outdir = tmp_path_factory.mktemp("cdk.out.mirror")
    context = {**cdk_app.default_context(), "weightsSource": weights_mirror.rstrip("/")}
    app = cdk.App(context=context, outdir=str(outdir))
    build_application(app, Settings.from_context(context))
    app.synth()
    enforcer = _enforce(outdir, s3_env)
    yield enforcer
    enforcer.close()


@pytest.fixture(scope="session")
def adapt(s3_env, session_jobs, roles):
    """adapt(**changes) -> the harness's adaptations for this test session's loopback S3 (and SQS, SNS),
    each pod answered as its synthesized role would be (pass roles=... for another synthesized app)."""
    from tests.conftest import TEST_BUCKET

    def make(**changes) -> Adaptations:
        return Adaptations(**{"s3_env": s3_env, "bucket": TEST_BUCKET, "jobs": session_jobs, "roles": roles,
                              **changes})

    return make


# --- compile once, stage once: the pods the tests start share these ------------------

MIRROR = "s3://{bucket}/weights/{model_id}/{revision}/"


@pytest.fixture(scope="session")
def pods_root(tmp_path_factory):
    return tmp_path_factory.mktemp("pods")


@pytest.fixture(scope="session")
def weights_mirror(s3_env, tiny_weights, compile_pod_spec) -> str:
    """The production path: the operator mirrors the weights once (here the tiny ones,
    under the model id and revision the Job names) and the Job reads the mirror."""
    from tests.conftest import TEST_BUCKET

    job_env = env_of(find_container(compile_pod_spec, "compile"))
    model_id, revision = job_env["SD21_MODEL_ID"], job_env["SD21_MODEL_REVISION"]
    dest = MIRROR.format(bucket=TEST_BUCKET, model_id=model_id, revision=revision)
    result = subprocess.run([sys.executable, "-m", "sd21.weights", "--from-dir", str(tiny_weights),
                             "--model-id", model_id, "--revision", revision, "--dest", dest],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return dest


@pytest.fixture(scope="session")
def cpu_version(compile_pod_spec, adapt, pods_root) -> str:
    """The version sd21-compile itself computes for the cpu backend, from the Job's env."""
    pod = Pod(compile_pod_spec, pods_root)
    compile_container = pod.container("compile", adapt())
    result = compile_container.run(timeout=120, command=[*compile_container.spec["command"], "--print-version"])
    assert result.returncode == 0, result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def compiled(compile_pod_spec, adapt, weights_mirror, mirror_roles, cpu_version, pods_root, s3_client) -> str:
    pod = Pod(compile_pod_spec, pods_root)
    result = pod.container("compile", adapt(weights_source=weights_mirror, roles=mirror_roles,
                                            extra_env={"SD21_MODEL_VERSION": cpu_version})).run(timeout=600)
    assert result.returncode == 0, result.output
    assert "committed" in result.output
    return cpu_version


@pytest.fixture(scope="session")
def inference_pod(inference_pod_spec, pods_root):
    pod = Pod(inference_pod_spec, pods_root)
    yield pod
    pod.cleanup()


@pytest.fixture(scope="session")
def staged(inference_pod, compiled, adapt) -> str:
    result = inference_pod.container("stage", adapt(extra_env={"SD21_MODEL_VERSION": compiled})).run(timeout=300)
    assert result.returncode == 0, result.output
    return compiled


FAST_CLOUDWATCH = {"SD21_CLOUDWATCH_PERIOD_S": "1"}


@pytest.fixture(scope="session")
def serving(inference_pod, staged, adapt):
    """One healthy server replica from its spec, shared by the tests that only send it requests
    (each start costs seconds: torch, the model, the warm-up); tests that break, drain, kill or
    configure a server start their own. It publishes to CloudWatch every second instead of every
    60 (a timing value), for the test that reads what the pods publish."""
    from tests.support.pods.cluster import start_server

    container = start_server(inference_pod, staged, adapt, extra_env=FAST_CLOUDWATCH)
    yield container
    container.kill()


@pytest.fixture
def gateway_before(zero, zero_roles, adapt, pods_root):
    """The scale-to-zero gateway from its spec. The inference Service's DNS name resolves to the
    given loopback URL (the adaptation), so it reaches it only if its env names that very Service."""
    objects = zero.objects
    (gateway,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "sd21-gateway"]
    (upstream,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "sd21-inference"]
    started = []

    def start(upstream_url: str, extra_env: dict | None = None, jobs: dict | None = None, roles=None):
        meta, port = upstream["metadata"], upstream["spec"]["ports"][0]["port"]
        pod = Pod(pod_spec(gateway), pods_root)
        spec = find_container(pod.spec, "gateway")
        container = pod.container("gateway", adapt(
            ports={p["containerPort"]: free_port() for p in spec["ports"]},
            hosts={f"http://{meta['name']}.{meta['namespace']}.svc:{port}": upstream_url}, extra_env=extra_env or {},
            roles=roles or zero_roles, **({"jobs": jobs} if jobs else {})))
        container.start()
        started.append((container, pod))
        container.wait_http("readinessProbe", timeout=60)
        return container

    yield start
    for container, pod in started:
        container.signal(signal.SIGTERM)
        container.wait(timeout=60)
        pod.cleanup()


@pytest.fixture
def cold_start_metrics_pod(synthesized, application, adapt, pods_root):
    """start(prometheus_url, extra_env) -> the sd21-cold-start-metrics container from its spec.
    The in-cluster Prometheus resolves to prometheus_url only if the pod's env names the
    Service the prometheus chart creates (by the chart's own naming rule)."""
    from tests.integration.workload.test_interlocks import prometheus_server_url, same_service

    template = synthesized.template(application.workload).to_json()
    (deployment,) = [o for o in rendering.all_objects(rendering.from_template_file(
        synthesized.template_file(application.workload))) if o["kind"] == "Deployment"
        and o["metadata"]["name"] == "sd21-cold-start-metrics"]
    started = []

    def start(prometheus_url: str, extra_env: dict | None = None):
        pod = Pod(pod_spec(deployment), pods_root)
        spec = find_container(pod.spec, "cold-start-metrics")
        in_cluster = env_of(spec)["SD21_PROMETHEUS_URL"]
        assert same_service(in_cluster, None, prometheus_server_url(template)), in_cluster
        container = pod.container("cold-start-metrics", adapt(hosts={in_cluster: prometheus_url},
                                                              extra_env=extra_env or {}))
        container.start()
        started.append((container, pod))
        return container

    yield start
    for container, pod in started:
        container.kill()
        pod.cleanup()
