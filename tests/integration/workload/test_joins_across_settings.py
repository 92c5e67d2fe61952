"""The workload's joins hold across the range of settings, not only for the two
synthesized modes: the charts rendered by cdk8s alone (stacks/workload/serving/manifests.py
workload_charts, from the stack's own workload_spec, stacks/workload/stack.py; seconds, no
synth), each figure read back from the objects and, where a process uses it, through that
process's own code: each container's env parsed by its process's own class of the contract
(sd21.contract: `XEnv.from_env`) is what the settings say."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from sd21.contract import CloudWatchEnv, CompileEnv, GatewayEnv, JobsEnv, ServerEnv, StageEnv

import app as cdk_app
from stacks.settings import Settings
from stacks.workload.serving.compile_job import SCRATCH_DIR
from stacks.workload.serving.gateway import COLD_RETRY_AFTER_SECONDS, COLD_START_ESTIMATE_SECONDS, METRICS_PORT
from stacks.workload.serving.inference import UNHEALTHY_EXIT_DELAY_SECONDS
from stacks.workload.serving.manifests import workload_charts
from stacks.workload.serving.spec import MODEL_DIR, SERVE_PORT
from stacks.workload.stack import workload_spec
from tests.integration.workload.test_interlocks import alb_idle_seconds, deregistration_seconds
from tests.support.k8s_objects import container, env, pod_spec

ROOT = Path(__file__).resolve().parents[3]
ZERO = {"minReplicas": 0, "acceptColdStarts": True}
BUCKET = "sd21-models-example"
# The edges of what the settings accept (docs/settings.md), in both modes.
CONTEXTS = {
    "defaults": {},
    "shortest-timeout": {"requestTimeoutSeconds": 6, "hangMinimumSeconds": 5, "latencySloSeconds": 5},
    "longest-timeout": {"requestTimeoutSeconds": 600},
    "zero": ZERO,
    "zero-longest": {**ZERO, "coldStartHoldSeconds": 3300, "requestTimeoutSeconds": 600},
    "zero-no-hold": {**ZERO, "coldStartHoldSeconds": 0, "coldStartHoldRequests": 0},
    "mirrored-weights": {"weightsSource": "s3://weights-mirror-example/sd21/"},
}


class _Repository:
    """What workload_spec asks of the ECR repository."""

    def repository_uri_for_tag(self, tag: str) -> str:
        return f"registry.example/sd21:{tag}"


def spec_for(settings: Settings):
    """The stack's own workload_spec, with stand-ins for the repository and the bucket."""
    return workload_spec(settings, repository=_Repository(), bucket=SimpleNamespace(bucket_name=BUCKET),
                         jobs_env={})


class Rendered:
    def __init__(self, context: dict):
        self.settings = Settings.from_context({**cdk_app.default_context(), **context})
        self.objects = [obj for chart in workload_charts(spec_for(self.settings)) for obj in chart.to_json()]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [o for o in self.objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
        assert len(found) == 1, (kind, name, len(found))
        return found[0]

    def server(self) -> dict:
        return container(self.one("Deployment", "sd21-inference"), "server")

    def gateway(self) -> dict | None:
        found = [o for o in self.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "sd21-gateway"]
        return container(found[0], "gateway") if found else None

    def server_env(self) -> ServerEnv:
        """What sd21-serve reads from its pod's env."""
        return ServerEnv.from_env(env(self.server()))

    def gateway_env(self) -> GatewayEnv | None:
        gateway = self.gateway()
        return GatewayEnv.from_env(env(gateway)) if gateway else None

    def compile_env(self) -> CompileEnv:
        return CompileEnv.from_env(env(container(self.one("Job"), "compile")))


@pytest.fixture(scope="module", params=list(CONTEXTS))
def rendered(request) -> Rendered:
    return Rendered(CONTEXTS[request.param])


# --- each process reads what the settings say (one round trip per process) -----------

def test_sd21_compile_reads_the_model_the_version_and_the_weights_the_settings_name(rendered):
    settings, version = rendered.settings, spec_for(rendered.settings).model_version
    model = settings.model
    assert rendered.compile_env() == CompileEnv(
        backend="neuron", bucket=BUCKET, model_name=model.model_name, model_version=version,
        model_id=model.model_id, model_revision=model.model_revision,
        weights_source=model.model_id if model.weights_source == "hub" else model.weights_source,
        neuron_sdk=model.neuron_sdk, workdir=SCRATCH_DIR)


def test_sd21_stage_reads_the_artifact_the_compile_job_makes(rendered):
    stage = StageEnv.from_env(env(container(rendered.one("Deployment", "sd21-inference"), "stage")))
    assert stage == StageEnv(backend="neuron", bucket=BUCKET, model_name=rendered.settings.model.model_name,
                             model_version=spec_for(rendered.settings).model_version, model_dir=MODEL_DIR)


def test_sd21_serve_reads_the_endpoint_settings(rendered):
    settings = rendered.settings
    endpoint = settings.endpoint
    assert rendered.server_env() == ServerEnv(
        backend="neuron", model_dir=MODEL_DIR, model_version=spec_for(settings).model_version,
        model_name=settings.model.model_name, port=SERVE_PORT, queue_size=endpoint.queue_size,
        request_timeout_s=endpoint.request_timeout_seconds, drain_grace_s=endpoint.request_timeout_seconds,
        max_consecutive_failures=endpoint.device_failures_before_restart, watchdog_factor=endpoint.hang_factor,
        watchdog_min_s=endpoint.hang_minimum_seconds, unhealthy_exit_delay_s=UNHEALTHY_EXIT_DELAY_SECONDS,
        jobs=JobsEnv(bucket=BUCKET), cloudwatch=CloudWatchEnv(cluster=settings.cluster.cluster_name))


def test_sd21_gateway_reads_the_scale_to_zero_settings(rendered):
    settings = rendered.settings
    endpoint = settings.endpoint
    if not endpoint.scales_to_zero:
        assert rendered.gateway_env() is None
        return
    service = rendered.one("Service", "sd21-inference")["metadata"]
    assert rendered.gateway_env() == GatewayEnv(
        upstream=f"http://{service['name']}.{service['namespace']}.svc:80", port=SERVE_PORT,
        metrics_port=METRICS_PORT, request_timeout_s=endpoint.request_timeout_seconds,
        cold_retry_after_s=COLD_RETRY_AFTER_SECONDS, hold_requests=endpoint.cold_start_hold_requests,
        hold_s=endpoint.cold_start_hold_seconds, cold_start_s=COLD_START_ESTIMATE_SECONDS,
        model_name=settings.model.model_name, jobs=JobsEnv(bucket=BUCKET),
        cloudwatch=CloudWatchEnv(cluster=settings.cluster.cluster_name))


# --- what the figures must be to one another ------------------------------------------


def test_the_alb_outlasts_a_held_request_and_its_generation(rendered):
    gateway = rendered.gateway_env()
    assert (gateway is not None) == rendered.settings.endpoint.scales_to_zero
    hold = gateway.hold_s if gateway else 0
    timeout = rendered.server_env().request_timeout_s
    idle = alb_idle_seconds(rendered.one("Ingress"))
    # Seconds to spare for the last bytes of an answer given at the timeout; 4000 is the ALB's
    # maximum (a third-party source only; see test_interlocks.py).
    assert hold + timeout + 10 <= idle <= 4000
    if gateway:
        assert gateway.request_timeout_s >= timeout


def test_whoever_the_alb_talks_to_keeps_idle_connections_longer(rendered):
    from sd21 import gateway as gateway_process, server as server_process

    ingress = rendered.one("Ingress")
    idle = alb_idle_seconds(ingress)
    target = ingress["spec"]["defaultBackend"]["service"]["name"]
    if target == "sd21-inference":
        assert server_process.keep_alive_seconds(rendered.server_env().request_timeout_s) > idle
    else:
        gateway = rendered.gateway_env()
        assert target == "sd21-gateway"
        assert gateway_process.keep_alive_seconds(gateway.hold_s, gateway.request_timeout_s) > idle


def test_shutdown_waits_out_the_alb_then_the_drain(rendered):
    deployment = rendered.one("Deployment", "sd21-inference")
    server = rendered.server()
    deregistration = deregistration_seconds(rendered.one("Ingress"))
    assert server["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(deregistration)]
    drain = rendered.server_env().drain_grace_s
    assert drain >= rendered.server_env().request_timeout_s
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    # Both, with seconds to spare for the process to exit, and not much more: a terminating
    # pod keeps its inf2 node.
    assert deregistration + drain + 10 <= grace <= deregistration + drain + 60
    gateway = rendered.gateway_env()
    if gateway:  # uvicorn waits up to the request timeout for open requests before it exits
        grace = pod_spec(rendered.one("Deployment", "sd21-gateway"))["terminationGracePeriodSeconds"]
        assert grace > gateway.request_timeout_s


def test_the_compile_job_names_the_version_sd21_compile_computes(rendered, monkeypatch):
    """sd21-compile's own argument parsing, from the Job's env: the Job would exit 2 otherwise."""
    from sd21 import compile as compile_process

    job = container(rendered.one("Job"), "compile")
    for name, value in env(job).items():
        monkeypatch.setenv(name, value)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert compile_process.main(["--print-version"]) == 0
    version = printed.getvalue().strip()
    assert rendered.compile_env().model_version == version
    deployment = rendered.one("Deployment", "sd21-inference")
    assert StageEnv.from_env(env(container(deployment, "stage"))).model_version == version
    assert rendered.server_env().model_version == version
    assert deployment["spec"]["template"]["metadata"]["labels"]["sd21.aws/model-version"] == version


def test_the_compile_job_starts_with_the_compiler_environment_sd21_compile_hashes(rendered, monkeypatch):
    """sd21-compile refuses (exit 2) a neuron compile whose environment is not the hashed one."""
    from sd21 import compile as compile_process
    from sd21.artifact import CompileInputs

    job_env = env(container(rendered.one("Job"), "compile"))
    for name, value in job_env.items():
        monkeypatch.setenv(name, value)
    args = compile_process.parse_args([])
    inputs = CompileInputs.defaults(args.backend, model_id=args.model_id, model_revision=args.model_revision,
                                    neuron_sdk=args.neuron_sdk)
    assert inputs.backend == "neuron" and inputs.compiler_env
    assert inputs.compiler_env_mismatch(job_env) == {}


def test_the_compile_job_fetches_the_weights_the_settings_name(rendered, monkeypatch):
    """Through sd21-compile's own parsing: the hub id, or the S3 mirror when one is set."""
    from sd21 import compile as compile_process

    for name, value in env(container(rendered.one("Job"), "compile")).items():
        monkeypatch.setenv(name, value)
    args = compile_process.parse_args([])
    source = args.weights_source or args.model_id
    settings = rendered.settings
    assert source == (settings.model.model_id if settings.model.weights_source == "hub" else settings.model.weights_source)


def test_the_model_directory_is_the_volume_both_containers_mount(rendered):
    deployment = rendered.one("Deployment", "sd21-inference")
    for name, process in (("stage", StageEnv), ("server", ServerEnv)):
        c = container(deployment, name)
        assert process.from_env(env(c)).model_dir in {mount["mountPath"] for mount in c["volumeMounts"]}, name


def test_the_server_port_is_what_the_service_probes_and_env_name(rendered):
    from sd21 import server as server_process

    server = rendered.server()
    port = rendered.server_env().port
    assert [p["containerPort"] for p in server["ports"]] == [port]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["port"] == port
    service = rendered.one("Service", "sd21-inference")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]
    backend = rendered.one("Ingress")["spec"]["defaultBackend"]["service"]
    if rendered.gateway() is None:
        assert backend["name"] == "sd21-inference"
        assert backend["port"]["number"] == service["spec"]["ports"][0]["port"]
    else:  # the gateway forwards to the Service's port
        upstream = rendered.gateway_env().upstream
        assert upstream.endswith(f":{service['spec']['ports'][0]['port']}")
    assert server_process.parse_args([]).port == port  # the image's own default (make demo, a bare container)


def test_pods_run_as_the_images_user(rendered):
    dockerfile_user = int(re.search(r"^USER (\d+)$", (ROOT / "model_image/Dockerfile").read_text(), re.M).group(1))
    for kind, name in (("Deployment", "sd21-inference"), ("Job", None)):
        obj = rendered.one(kind, name)
        assert pod_spec(obj)["securityContext"]["runAsUser"] == dockerfile_user, kind


def test_the_spec_cannot_change_once_the_charts_have_read_it():
    import dataclasses

    spec = spec_for(Settings.from_context(cdk_app.default_context()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.image = "another"


def readme_timeouts() -> dict[str, tuple[int, ...]]:
    """The timeout table in docs/operating.md, as numbers."""
    readme = (ROOT / "docs" / "operating.md").read_text()
    rows = {
        "idle": r"\| ALB idle timeout \| `requestTimeoutSeconds` \+ (\d+) s, plus `coldStartHoldSeconds` at scale to zero \|",
        "keep_alive": r"\| Idle keep-alive of the pods the ALB talks to \| `requestTimeoutSeconds` \+ (\d+) s, plus the hold",
        "deregistration": r"\| ALB deregistration delay, waited out by the preStop sleep \| (\d+) s \|",
        "grace": r"\| `terminationGracePeriodSeconds` \| (\d+) s \+ `requestTimeoutSeconds` \+ (\d+) s \|",
    }
    found = {name: re.search(pattern, readme) for name, pattern in rows.items()}
    assert all(found.values()), [name for name, match in found.items() if not match]
    return {name: tuple(map(int, match.groups())) for name, match in found.items()}


def test_the_readmes_timeout_table_is_what_is_deployed(rendered):
    from sd21 import gateway as gateway_process, server as server_process

    documented = readme_timeouts()
    settings = rendered.settings
    timeout = settings.endpoint.request_timeout_seconds
    hold = settings.endpoint.cold_start_hold_seconds if settings.endpoint.scales_to_zero else 0
    ingress = rendered.one("Ingress")
    assert alb_idle_seconds(ingress) == timeout + documented["idle"][0] + hold
    if rendered.gateway() is None:
        assert server_process.keep_alive_seconds(timeout) == timeout + documented["keep_alive"][0]
    else:
        assert gateway_process.keep_alive_seconds(hold, timeout) == timeout + documented["keep_alive"][0] + hold
    assert deregistration_seconds(ingress) == documented["deregistration"][0]
    assert rendered.server_env().drain_grace_s == timeout
    before, after = documented["grace"]
    assert pod_spec(rendered.one("Deployment", "sd21-inference"))["terminationGracePeriodSeconds"] == \
        before + timeout + after


def _run_gateway_main(monkeypatch, env: dict[str, str]) -> dict:
    """sd21-gateway's main() as the container runs it, stopping short of the network."""
    import sd21.cloudwatch
    from sd21 import gateway as gateway_process

    for var, _ in GatewayEnv.variables():
        monkeypatch.delenv(var.name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ran: dict = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: ran.update(options, app=app))
    monkeypatch.setattr(gateway_process, "start_http_server",
                        lambda port, addr, registry: ran.update(metrics_port=port))
    monkeypatch.setattr(sd21.cloudwatch, "from_env", lambda registry, mappings: None)
    ran["exit"] = gateway_process.main([])
    return ran


def test_the_gateway_process_serves_where_its_pod_says(monkeypatch):
    """From the pod's env, and with none at all (a bare container): the ports the pod
    declares, the probes use and Prometheus scrapes."""
    from sd21 import gateway as gateway_process

    zero = Rendered(ZERO)
    pod = zero.one("Deployment", "sd21-gateway")["spec"]["template"]
    gateway = zero.gateway()
    ports = {port["name"]: port["containerPort"] for port in gateway["ports"]}
    assert gateway["readinessProbe"]["httpGet"]["port"] == ports["http"]
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == ports["metrics"]
    ran = _run_gateway_main(monkeypatch, env(gateway))
    assert (ran["exit"], ran["port"], ran["metrics_port"]) == (0, ports["http"], ports["metrics"])
    told = zero.gateway_env()
    timeout, hold = told.request_timeout_s, told.hold_s
    assert ran["timeout_graceful_shutdown"] == timeout
    assert ran["timeout_keep_alive"] == gateway_process.keep_alive_seconds(hold, timeout)
    bare = _run_gateway_main(monkeypatch, GatewayEnv(upstream="http://127.0.0.1:1").to_env())  # nothing listens there
    assert (bare["port"], bare["metrics_port"]) == (ports["http"], ports["metrics"])
    # Without settings nothing is held (the documented default: 503 at once) ...
    assert bare["timeout_keep_alive"] == gateway_process.keep_alive_seconds(0, bare["timeout_graceful_shutdown"])
    # ... and people are told what the pod tells them.
    from starlette.testclient import TestClient

    with TestClient(bare["app"]) as client:
        api = client.post("/v1/images/generations", json={"prompt": "x"})
        page = client.get("/", headers={"Accept": "text/html"})
    assert api.status_code == 503 and api.headers["retry-after"] == str(told.cold_retry_after_s)
    assert f"Starting, about {told.cold_start_s} s" in page.text
    # The app's own default (tests, embedding) is the estimate the pod is given.
    assert gateway_process.GatewaySettings("http://127.0.0.1:1", 60).cold_start_s == told.cold_start_s


# --- the compile Job across releases of one model version ---------------------------

def _compile_job_of(**context) -> dict:
    rendered = Rendered(context)
    (job,) = [o for o in rendered.objects if o["kind"] == "Job"]
    return job


def test_a_release_that_keeps_the_compile_inputs_applies_the_very_same_compile_job():
    """The stack's own workload_spec: a new commit (imageTag) changes no byte of the Job, so
    CloudFormation has nothing to re-apply, no inf2 node starts and a running compile goes on."""
    first, second = _compile_job_of(imageTag="commit-a"), _compile_job_of(imageTag="commit-b")
    assert first == second
    (compile_,) = first["spec"]["template"]["spec"]["containers"]
    assert compile_["image"].endswith(":compile-" + first["metadata"]["labels"]["sd21.aws/model-version"])


def test_the_serving_pods_still_run_each_releases_image():
    server = container(Rendered({"imageTag": "commit-b"}).one("Deployment", "sd21-inference"), "server")
    assert server["image"].endswith(":commit-b")


def test_a_compile_input_or_a_new_compile_run_makes_a_new_compile_job():
    base = _compile_job_of()
    version = base["metadata"]["labels"]["sd21.aws/model-version"]
    for context in ({"modelRevision": "0" * 40}, {"neuronSdk": "2.31.2"}, {"modelId": "someone/other-sd21"}):
        changed = _compile_job_of(**context)
        assert changed["metadata"]["labels"]["sd21.aws/model-version"] != version, context
        assert changed["metadata"]["name"] != base["metadata"]["name"], context
    again = _compile_job_of(compileRun=1)
    assert again["metadata"]["labels"]["sd21.aws/model-version"] == version  # the same artifact
    assert again["metadata"]["name"] != base["metadata"]["name"]              # by a new Job
