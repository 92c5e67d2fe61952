"""Every SD21_ variable, once, and the environment of each process of the image.

A chart builds a container's env as `ServerEnv(queue_size=4, ...).to_env()`; the entrypoint
parses its own with `ServerEnv.from_env(os.environ)` (sd21.env.read prints a bad value's
error as one line and exits 2). model_image/README.md's table is `environment_table()`
(`python -m sd21.contract`), kept equal by tests/unit/sd21/test_contract.py.
"""
from __future__ import annotations

from typing import Optional

from ..artifact import BACKENDS, DEFAULT_MODEL_ID, DEFAULT_MODEL_REVISION, DEFAULT_NEURON_SDK
from .variable import (
    HTTP_URL, ContractError, Env, Pattern, Var, above, at_least, between, environment, one_of, part,
)

# --- the artifact: compile, stage, serve -------------------------------------------------
BACKEND = Var("SD21_BACKEND", str, "neuron", "the accelerator: neuron, cuda or cpu (cuda and cpu run TorchScript traces "
              "of the same parts)",
              one_of(*BACKENDS))
BUCKET = Var("SD21_BUCKET", str, None, "the model bucket: artifacts (compile and stage require it, or "
             "`--bucket`) and the jobs' requests and images")
MODEL_NAME = Var("SD21_MODEL_NAME", str, "sd21-512", "the model's name: its artifacts' S3 prefix, and the "
                 "`model` OpenAI clients name (serve and the gateway refuse another)")
MODEL_VERSION = Var("SD21_MODEL_VERSION", str, None, "the artifact version: compile refuses inputs that hash to "
                    "another, stage requires it (or `--version`), serve reports it")
MODEL_DIR = Var("SD21_MODEL_DIR", str, "/model", "where stage puts the artifact (`<dir>/<version>`, "
                "`<dir>/current`) and serve loads it")
MODEL_ID = Var("SD21_MODEL_ID", str, DEFAULT_MODEL_ID, "the Hugging Face model the artifact is compiled from")
MODEL_REVISION = Var("SD21_MODEL_REVISION", str, DEFAULT_MODEL_REVISION, "the hub commit of its weights (pinned)")
WEIGHTS_SOURCE = Var("SD21_WEIGHTS_SOURCE", str, None, "where compile reads the weights: the hub (unset: the model "
                     "id), an `s3://` mirror made by `sd21-mirror-weights` (verified against its "
                     "`weights-manifest.json`) or a local directory")
NEURON_SDK = Var("SD21_NEURON_SDK", str, DEFAULT_NEURON_SDK, "the Neuron SDK the artifact version names")
IMAGE_NEURON_SDK = Var("SD21_IMAGE_NEURON_SDK", str, None, "the Neuron SDK the image carries (its Dockerfile "
                       "sets it): compile refuses to name another in a neuron artifact")
WORKDIR = Var("SD21_WORKDIR", str, None, "compile's scratch space (unset: a temp dir; compile checks it, the "
              "working directory, `$TMPDIR`, `/tmp` and `/var/tmp` are writable)")
STAGE_WORKERS = Var("SD21_STAGE_WORKERS", int, 8, "parallel ranged GETs of the artifact", at_least(1))
STAGE_CHUNK_MIB = Var("SD21_STAGE_CHUNK_MIB", int, 8, "MiB per ranged GET", at_least(1))

# --- HTTP: serve and the gateway ----------------------------------------------------------
HOST = Var("SD21_HOST", str, "0.0.0.0", "the address to listen on")
PORT = Var("SD21_PORT", int, 8080, "the HTTP port (the images' Dockerfiles and the pods say the same)",
           between(1, 65535))
# One default for both processes (it was 120 in the server and 300 in the gateway): the
# value every deployment sets on both (cdk.json requestTimeoutSeconds), so a bare process
# times out as a deployed one, and equal values keep the gateway waiting at least as long
# as the server it forwards to. Whole seconds, as the setting.
REQUEST_TIMEOUT_S = Var("SD21_REQUEST_TIMEOUT_S", int, 60, "longest a request may take, admission to answer "
                        "(then 504); the gateway waits as long for a replica's answer", at_least(1))
HEAD_TIMEOUT_S = Var("SD21_HEAD_TIMEOUT_S", float, 10.0, "a request's head must arrive within this of its first "
                     "byte, else `408` and the connection closes", above(0))
BODY_TIMEOUT_S = Var("SD21_BODY_TIMEOUT_S", float, 30.0, "its body within this of its head (at most 1 MiB: about "
                     "35 KB/s at the least)", above(0))

# --- serve ----------------------------------------------------------------------------------
QUEUE_SIZE = Var("SD21_QUEUE_SIZE", int, 4, "requests waiting beside the running one; more get 429 + Retry-After",
                 at_least(1))
DRAIN_GRACE_S = Var("SD21_DRAIN_GRACE_S", float, 90.0, "on SIGTERM, how long admitted requests may finish (set "
                    "`terminationGracePeriodSeconds` above it)", at_least(0))
UI = Var("SD21_UI", bool, True, "`1` serves the UI at `/ui`, `0` does not")
# Images are fetched by the browser right after they are made: 5 minutes is plenty. The
# device makes at most one image a second or so (~0.5 MB of PNG), so the cache holds well
# under 200 MB by age alone (sd21/ui.py holds it under a byte budget whatever the pace).
UI_CACHE_SWEEP_S = Var("SD21_UI_CACHE_SWEEP_S", int, 60, "how often the UI's image cache (`/tmp/gradio`, held under "
                       "256 MiB) is swept", at_least(1))
UI_CACHE_MAX_AGE_S = Var("SD21_UI_CACHE_MAX_AGE_S", int, 300, "the age at which a cached UI image is deleted",
                         at_least(1))
MAX_CONSECUTIVE_FAILURES = Var("SD21_MAX_CONSECUTIVE_FAILURES", int, 3, "failed generations in a row after which "
                               "the device counts as broken (`sd21/health.py`)", at_least(1))
WATCHDOG_FACTOR = Var("SD21_WATCHDOG_FACTOR", float, 10.0, "a generation running longer than this many times its "
                      "measured duration is hung", at_least(1))
WATCHDOG_MIN_S = Var("SD21_WATCHDOG_MIN_S", float, 30.0, "the hang bound is never below this", above(0))
UNHEALTHY_EXIT_DELAY_S = Var("SD21_UNHEALTHY_EXIT_DELAY_S", float, 1.0, "once the device breaks, time to answer "
                             "what was held with 503 before exiting (the chart sets one readiness period past "
                             "leaving the Service)", at_least(0))
CPU_FAULT = Var("SD21_CPU_FAULT", str, None, "a test facility of the cpu backend: `error-after:N` or "
                "`hang-after:N` generations", Pattern(r"(error-after|hang-after):[0-9]+",
                                                      "error-after:N or hang-after:N (N >= 0)"))

# --- the gateway --------------------------------------------------------------------------
UPSTREAM = Var("SD21_UPSTREAM", str, None, "the inference Service's base URL (required, or `--upstream`)", HTTP_URL)
METRICS_PORT = Var("SD21_METRICS_PORT", int, 9090, "the gateway's Prometheus port (not behind the ALB)",
                   between(1, 65535))
COLD_RETRY_AFTER_S = Var("SD21_COLD_RETRY_AFTER_S", int, 60, "the Retry-After of a 503 while no replica is ready",
                         at_least(1))
HOLD_REQUESTS = Var("SD21_HOLD_REQUESTS", int, 0, "requests held at most while no replica is ready (0: 503 at "
                    "once)", at_least(0))
HOLD_S = Var("SD21_HOLD_S", int, 0, "how long each is held before its 503 (0: no holding)", at_least(0))
COLD_START_S = Var("SD21_COLD_START_S", int, 300, "the expected cold start, shown to people waiting", at_least(1))

# --- CloudWatch: serve, the gateway, cold-start metrics -------------------------------------
CLOUDWATCH_CLUSTER = Var("SD21_CLOUDWATCH_CLUSTER", str, None, "the Cluster dimension of the figures published "
                         "to CloudWatch (unset: none are)")
CLOUDWATCH_PERIOD_S = Var("SD21_CLOUDWATCH_PERIOD_S", float, 60.0, "seconds between publications", above(0))

# --- jobs: serve and the gateway ----------------------------------------------------------
JOBS_QUEUE_URL = Var("SD21_JOBS_QUEUE_URL", str, None, "the job queue (unset: no job routes); needs SD21_BUCKET")
JOBS_DLQ_URL = Var("SD21_JOBS_DLQ_URL", str, None, "its dead-letter queue, whose jobs are marked failed")
JOBS_TOPIC_ARN = Var("SD21_JOBS_TOPIC_ARN", str, None, "the topic every finished job is announced on")
JOBS_MAX_ATTEMPTS = Var("SD21_JOBS_MAX_ATTEMPTS", int, 3, "attempts at a job (the queue's maxReceiveCount)",
                        at_least(1))
JOBS_VISIBILITY_S = Var("SD21_JOBS_VISIBILITY_S", int, 180, "a taken job stays invisible this long, extended while "
                        "it runs", at_least(2))
JOBS_URL_EXPIRES_S = Var("SD21_JOBS_URL_EXPIRES_S", int, 900, "lifetime of a finished job's presigned image URL",
                         between(60, 604800))

# --- cold-start metrics, benchmark ----------------------------------------------------------
PROMETHEUS_URL = Var("SD21_PROMETHEUS_URL", str, None, "the in-cluster Prometheus asked for Karpenter's and the "
                     "kubelet's figures", HTTP_URL)
NODE_POOL = Var("SD21_NODE_POOL", str, None, "the NodePool whose nodes' launches and image pulls are measured")
BENCH_URL = Var("SD21_BENCH_URL", str, "http://127.0.0.1:8080", "the endpoint the benchmark drives")


# --- parts: what one module reads, wherever it runs ----------------------------------------
@environment()
class CloudWatchEnv(Env):
    """sd21.cloudwatch: publishing on when a cluster is named."""
    cluster: Optional[str] = CLOUDWATCH_CLUSTER.field()
    period_s: float = CLOUDWATCH_PERIOD_S.field()


@environment()
class JobsEnv(Env):
    """sd21.jobs: the job routes and worker, on when a queue is named."""
    queue_url: Optional[str] = JOBS_QUEUE_URL.field()
    dead_letter_url: Optional[str] = JOBS_DLQ_URL.field()
    topic_arn: Optional[str] = JOBS_TOPIC_ARN.field()
    bucket: Optional[str] = BUCKET.field()
    max_attempts: int = JOBS_MAX_ATTEMPTS.field()
    visibility_s: int = JOBS_VISIBILITY_S.field()
    url_expires_s: int = JOBS_URL_EXPIRES_S.field()

    def check(self) -> None:
        if self.queue_url and not self.bucket:
            raise ContractError(f"{JOBS_QUEUE_URL.name} needs {BUCKET.name} (where requests and results go)")


# --- one per process (pyproject's [project.scripts]) -----------------------------------------
@environment("sd21-compile")
class CompileEnv(Env):
    backend: str = BACKEND.field()
    bucket: Optional[str] = BUCKET.field()
    model_name: str = MODEL_NAME.field()
    model_version: Optional[str] = MODEL_VERSION.field()
    model_id: str = MODEL_ID.field()
    model_revision: str = MODEL_REVISION.field()
    weights_source: Optional[str] = WEIGHTS_SOURCE.field()
    neuron_sdk: str = NEURON_SDK.field()
    image_neuron_sdk: Optional[str] = IMAGE_NEURON_SDK.field()
    workdir: Optional[str] = WORKDIR.field()


@environment("sd21-stage")
class StageEnv(Env):
    backend: str = BACKEND.field()
    bucket: Optional[str] = BUCKET.field()
    model_name: str = MODEL_NAME.field()
    model_version: Optional[str] = MODEL_VERSION.field()
    model_dir: str = MODEL_DIR.field()
    workers: int = STAGE_WORKERS.field()
    chunk_mib: int = STAGE_CHUNK_MIB.field()


@environment("sd21-serve")
class ServerEnv(Env):
    backend: str = BACKEND.field()
    model_dir: str = MODEL_DIR.field()
    model_version: Optional[str] = MODEL_VERSION.field()
    model_name: str = MODEL_NAME.field()
    host: str = HOST.field()
    port: int = PORT.field()
    queue_size: int = QUEUE_SIZE.field()
    request_timeout_s: int = REQUEST_TIMEOUT_S.field()
    drain_grace_s: float = DRAIN_GRACE_S.field()
    ui: bool = UI.field()
    ui_cache_sweep_s: int = UI_CACHE_SWEEP_S.field()
    ui_cache_max_age_s: int = UI_CACHE_MAX_AGE_S.field()
    max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES.field()
    watchdog_factor: float = WATCHDOG_FACTOR.field()
    watchdog_min_s: float = WATCHDOG_MIN_S.field()
    unhealthy_exit_delay_s: float = UNHEALTHY_EXIT_DELAY_S.field()
    head_timeout_s: float = HEAD_TIMEOUT_S.field()
    body_timeout_s: float = BODY_TIMEOUT_S.field()
    cpu_fault: Optional[str] = CPU_FAULT.field()
    jobs: JobsEnv = part(JobsEnv)
    cloudwatch: CloudWatchEnv = part(CloudWatchEnv)


@environment("sd21-gateway")
class GatewayEnv(Env):
    upstream: Optional[str] = UPSTREAM.field()
    host: str = HOST.field()
    port: int = PORT.field()
    metrics_port: int = METRICS_PORT.field()
    request_timeout_s: int = REQUEST_TIMEOUT_S.field()
    cold_retry_after_s: int = COLD_RETRY_AFTER_S.field()
    hold_requests: int = HOLD_REQUESTS.field()
    hold_s: int = HOLD_S.field()
    cold_start_s: int = COLD_START_S.field()
    model_name: str = MODEL_NAME.field()
    head_timeout_s: float = HEAD_TIMEOUT_S.field()
    body_timeout_s: float = BODY_TIMEOUT_S.field()
    jobs: JobsEnv = part(JobsEnv)
    cloudwatch: CloudWatchEnv = part(CloudWatchEnv)


@environment("sd21-cold-start-metrics")
class ColdStartMetricsEnv(Env):
    prometheus_url: str = PROMETHEUS_URL.field(required=True)
    node_pool: str = NODE_POOL.field(required=True)
    cluster: str = CLOUDWATCH_CLUSTER.field(required=True)
    period_s: float = CLOUDWATCH_PERIOD_S.field()


@environment("sd21-mirror-weights")
class MirrorWeightsEnv(Env):
    model_id: str = MODEL_ID.field()
    model_revision: str = MODEL_REVISION.field()


@environment("sd21-benchmark")
class BenchmarkEnv(Env):
    url: str = BENCH_URL.field()


PROCESSES: tuple[type[Env], ...] = (CompileEnv, StageEnv, ServerEnv, GatewayEnv, ColdStartMetricsEnv,
                                    MirrorWeightsEnv, BenchmarkEnv)


def _default(var: Var, required_by: list[str], read_by: list[str]) -> str:
    if var.default is not None:
        return f"`{var.text(var.default)}`"
    if required_by and len(required_by) < len(read_by):
        return f"required by {', '.join(required_by)}; elsewhere unset"
    return "required" if required_by else "unset"


def environment_table() -> str:
    """model_image/README.md's table: each variable once, the processes that read it, its one default."""
    users: dict[Var, list[str]] = {}
    required: dict[Var, list[str]] = {}
    for process in PROCESSES:
        for var, is_required in process.variables():
            users.setdefault(var, []).append(process.entrypoint.removeprefix("sd21-"))
            if is_required:
                required.setdefault(var, []).append(process.entrypoint.removeprefix("sd21-"))
    lines = ["| variable | read by | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{var.name}` | {', '.join(names)} | {_default(var, required.get(var, []), names)} | {var.doc} |"
              for var, names in users.items()]
    return "\n".join(lines) + "\n"
