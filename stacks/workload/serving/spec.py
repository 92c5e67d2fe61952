"""What the workload charts need, gathered once by the stack from the settings and the
CDK objects (bucket, repository; stacks/workload/stack.py workload_spec): charts never
retype a name or a version, never reach back into stacks/ and never see the settings.
Each group holds exactly the values its charts read."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from aws_cdk import Aws
from sd21.artifact import CompileInputs, artifact_version
from sd21.contract import CloudWatchEnv, JobsEnv, ServerEnv, StageEnv

NAMESPACE = "sd21"
APP_LABEL = "sd21-inference"
SERVE_PORT: int = ServerEnv.var("port").default  # the image's own (its Dockerfile says the same)
SERVICE_PORT = 80
HEALTH_PATH = "/health"
READY_PATH = "/ready"
# The load balancer takes this long to stop sending to a terminating pod; the
# preStop sleep waits it out before the server starts draining.
DEREGISTRATION_DELAY_SECONDS = 30
MODEL_DIR = "/model"
IMAGE_USER = 10001  # the image's non-root user (model_image/Dockerfile USER)


def compile_inputs(*, model_id: str, model_revision: str, neuron_sdk: str) -> CompileInputs:
    """The inputs whose hash is the artifact version (the compile Job checks it again)."""
    return CompileInputs.defaults(
        "neuron",
        model_id=model_id,
        model_revision=model_revision,
        neuron_sdk=neuron_sdk,
    )


@dataclass(frozen=True)
class Model:
    """The model the compile Job builds and the servers load."""
    name: str            # the S3 prefix and the label (modelName)
    id: str              # on the Hugging Face hub
    revision: str
    neuron_sdk: str
    weights_source: str  # "hub", or an s3:// mirror of the weights

    def compile_inputs(self) -> CompileInputs:
        return compile_inputs(model_id=self.id, model_revision=self.revision, neuron_sdk=self.neuron_sdk)

    @property
    def version(self) -> str:
        """The artifact version: the compile Job makes it, the servers load it."""
        return artifact_version(self.compile_inputs())

    @property
    def weights(self) -> str:
        """Where the compile Job fetches the weights from."""
        return self.id if self.weights_source == "hub" else self.weights_source


@dataclass(frozen=True)
class Endpoint:
    """What the server process is told, and the timeouts around it."""
    queue_size: int
    request_timeout_seconds: int
    device_failures_before_restart: int
    hang_factor: int
    hang_minimum_seconds: int

    @property
    def drain_grace_seconds(self) -> int:
        """Queued work may wait for every request ahead of it, each up to the timeout."""
        return self.request_timeout_seconds

    @property
    def termination_grace_seconds(self) -> int:
        return DEREGISTRATION_DELAY_SECONDS + self.drain_grace_seconds + 15


@dataclass(frozen=True)
class ScaleToZero:
    """At minReplicas 0 only: the gateway holds this many requests, this long, while a
    replica starts (stacks/workload/serving/gateway.py)."""
    hold_requests: int
    hold_seconds: int


@dataclass(frozen=True)
class IngressAccess:
    """Who reaches the ALB, and how."""
    scheme: str                      # "internal" or "internet-facing"
    allowed_cidrs: tuple[str, ...]
    certificate_arn: Optional[str]   # None: plain HTTP (internal only)


def region_env() -> dict[str, str]:
    """boto3's region in a pod: the stack's (a token until deploy)."""
    return {"AWS_REGION": Aws.REGION}


def cloudwatch_env(cluster_name: str) -> dict[str, str]:
    """Where the server and the gateway publish their figures (sd21.cloudwatch): the
    dimension the dashboard and alarms select (stacks/workload/observability/metrics.py)."""
    return {**CloudWatchEnv(cluster=cluster_name).to_env(), **region_env()}


@dataclass(frozen=True)
class WorkloadSpec:
    model: Model
    endpoint: Endpoint
    ingress: IngressAccess
    scale_to_zero: Optional[ScaleToZero]  # None: minReplicas >= 1, no gateway
    compile_run: int  # in the compile pod's template: raising it runs the compile of a version again
    cluster_name: str  # the CloudWatch dimension the figures are published under
    image: str
    gateway_image: str
    bucket_name: str
    system_node_label: tuple[str, str]  # where always-on pods (the gateway) run
    jobs_env: dict  # JobsEnv's queue, dead-letter queue and topic (stacks/workload/jobs/queue.py JobQueue.env)
    # An image reference that stays the same for every release of one model version (see
    # stacks/workload/serving/compile_job.py); None: the compile Job runs `image`, the release's.
    compile_image: Optional[str] = None

    @property
    def model_version(self) -> str:
        return self.model.version

    def job_env(self) -> dict[str, str]:
        """Where jobs go and where their requests and results live (sd21.jobs)."""
        return {**self.jobs_env, **JobsEnv(bucket=self.bucket_name).to_env()}

    def model_env(self) -> dict[str, str]:
        """Environment shared by the compile Job and the server: same model, same version.
        It is the stage's (sd21-stage reads all of it); the others read what they know of it."""
        return {
            **StageEnv(backend="neuron", bucket=self.bucket_name, model_name=self.model.name,
                       model_version=self.model_version, model_dir=MODEL_DIR).to_env(),
            **region_env(),
        }

    def compiler_env(self) -> dict[str, str]:
        """The Neuron compiler's environment, as the artifact version hashes it: the compile
        pod must start with it (sd21-compile checks it before importing diffusers)."""
        return dict(self.model.compile_inputs().compiler_env)

    def cloudwatch_env(self) -> dict[str, str]:
        return cloudwatch_env(self.cluster_name)

    @property
    def hold_seconds(self) -> int:
        """How long the gateway holds a request while no replica is ready (scale to zero only)."""
        return self.scale_to_zero.hold_seconds if self.scale_to_zero else 0

    @property
    def alb_idle_timeout_seconds(self) -> int:
        """Longer than the slowest answer: held, then queued and generated, plus a margin."""
        return self.hold_seconds + self.endpoint.request_timeout_seconds + 30
