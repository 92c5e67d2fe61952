"""What the workload charts need, gathered once by the stack from the settings and the
CDK objects (bucket, repository; stacks/workload/serving/manifests.py): charts never retype a
name or a version, and never reach back into stacks/. They read the settings through
WorkloadSettings, the part of stacks.settings.Settings they use."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

from aws_cdk import Aws
from sd21.artifact import CompileInputs

NAMESPACE = "sd21"
APP_LABEL = "sd21-inference"
SERVE_PORT = 8080  # the image's default SD21_PORT
SERVICE_PORT = 80
HEALTH_PATH = "/health"
READY_PATH = "/ready"
# The load balancer takes this long to stop sending to a terminating pod; the
# preStop sleep waits it out before the server starts draining.
DEREGISTRATION_DELAY_SECONDS = 30
MODEL_DIR = "/model"
IMAGE_USER = 10001  # the image's non-root user (model_image/Dockerfile USER)


class WorkloadSettings(Protocol):
    """The settings the workload charts read (stacks.settings.Settings has them all)."""
    cluster_name: str
    image_tag: str
    model_name: str
    model_id: str
    model_revision: str
    weights_source: str
    neuron_sdk: str
    compile_run: int
    min_replicas: int
    max_replicas: int
    target_pending_per_replica: int
    scale_to_zero_after_seconds: int
    cold_start_hold_requests: int
    cold_start_hold_seconds: int
    queue_size: int
    request_timeout_seconds: int
    device_failures_before_restart: int
    hang_factor: int
    hang_minimum_seconds: int
    ingress_scheme: str
    ingress_allowed_cidrs: tuple[str, ...]
    certificate_arn: Optional[str]

    @property
    def scales_to_zero(self) -> bool: ...


@dataclass(frozen=True)
class WorkloadSpec:
    settings: WorkloadSettings
    image: str
    gateway_image: str
    bucket_name: str
    model_version: str
    system_node_label: tuple[str, str]  # where always-on pods (the gateway) run
    jobs_env: dict  # the job queue, dead-letter queue and topic (stacks/workload/jobs/queue.py JobQueue.env)
    # An image reference that stays the same for every release of one model version (see
    # stacks/workload/serving/compile_job.py); None: the compile Job runs `image`, the release's.
    compile_image: Optional[str] = None

    def job_env(self) -> dict[str, str]:
        """Where jobs go and where their requests and results live (sd21.jobs)."""
        return {**self.jobs_env, "SD21_BUCKET": self.bucket_name}

    @property
    def weights_source(self) -> str:
        return self.settings.model_id if self.settings.weights_source == "hub" else self.settings.weights_source

    def model_env(self) -> dict[str, str]:
        """Environment shared by the compile Job and the server: same model, same version."""
        return {
            "SD21_BACKEND": "neuron",
            "SD21_BUCKET": self.bucket_name,
            "SD21_MODEL_NAME": self.settings.model_name,
            "SD21_MODEL_VERSION": self.model_version,
            "SD21_MODEL_DIR": MODEL_DIR,
            "AWS_REGION": Aws.REGION,
        }

    def compiler_env(self) -> dict[str, str]:
        """The Neuron compiler's environment, as the artifact version hashes it: the compile
        pod must start with it (sd21-compile checks it before importing diffusers)."""
        return dict(compile_inputs(self.settings).compiler_env)

    def cloudwatch_env(self) -> dict[str, str]:
        """Where the server and the gateway publish their figures (sd21.cloudwatch): the
        dimension the dashboard and alarms select (stacks/workload/observability/metrics.py)."""
        return {"SD21_CLOUDWATCH_CLUSTER": self.settings.cluster_name, "AWS_REGION": Aws.REGION}

    @property
    def hold_seconds(self) -> int:
        """How long the gateway holds a request while no replica is ready (scale to zero only)."""
        return self.settings.cold_start_hold_seconds if self.settings.scales_to_zero else 0

    @property
    def alb_idle_timeout_seconds(self) -> int:
        """Longer than the slowest answer: held, then queued and generated, plus a margin."""
        return self.hold_seconds + self.settings.request_timeout_seconds + 30

    @property
    def drain_grace_seconds(self) -> int:
        """Queued work may wait for every request ahead of it, each up to the timeout."""
        return self.settings.request_timeout_seconds

    @property
    def termination_grace_seconds(self) -> int:
        return DEREGISTRATION_DELAY_SECONDS + self.drain_grace_seconds + 15


def compile_inputs(settings: WorkloadSettings) -> CompileInputs:
    """The inputs whose hash is the artifact version (the compile Job checks it again)."""
    return CompileInputs.defaults(
        "neuron",
        model_id=settings.model_id,
        model_revision=settings.model_revision,
        neuron_sdk=settings.neuron_sdk,
    )
