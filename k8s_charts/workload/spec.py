"""What the workload charts need, gathered once from the settings and the CDK
objects (bucket, repository): charts never retype a name or a version."""
from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, aws_ecr as ecr, aws_s3 as s3
from sd21.artifact import CompileInputs, artifact_prefix, artifact_version

from stacks.model_storage.repository import gateway_tag
from stacks.settings import Settings

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


@dataclass(frozen=True)
class WorkloadSpec:
    settings: Settings
    image: str
    gateway_image: str
    bucket_name: str
    model_version: str
    system_node_label: tuple[str, str]  # where always-on pods (the gateway) run
    jobs_env: dict  # the job queue, dead-letter queue and topic (stacks/jobs/queue.py JobQueue.env)

    @classmethod
    def build(cls, settings: Settings, repository: ecr.IRepository, bucket: s3.IBucket,
              system_node_label: tuple[str, str], jobs_env: dict) -> "WorkloadSpec":
        return cls(
            settings=settings,
            image=repository.repository_uri_for_tag(settings.image_tag),
            gateway_image=repository.repository_uri_for_tag(gateway_tag(settings.image_tag)),
            bucket_name=bucket.bucket_name,
            model_version=artifact_version(compile_inputs(settings)),
            system_node_label=system_node_label,
            jobs_env=dict(jobs_env),
        )

    def job_env(self) -> dict[str, str]:
        """Where jobs go and where their requests and results live (sd21.jobs)."""
        return {**self.jobs_env, "SD21_BUCKET": self.bucket_name}

    @property
    def artifact_prefix(self) -> str:
        return artifact_prefix(self.settings.model_name, self.model_version)

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

    def cloudwatch_env(self) -> dict[str, str]:
        """Where the server and the gateway publish their figures (sd21.cloudwatch): the
        dimension the dashboard and alarms select (stacks/observability/metrics.py)."""
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


def compile_inputs(settings: Settings) -> CompileInputs:
    """The inputs whose hash is the artifact version (the compile Job checks it again)."""
    return CompileInputs.defaults(
        "neuron",
        model_id=settings.model_id,
        model_revision=settings.model_revision,
        neuron_sdk=settings.neuron_sdk,
    )
