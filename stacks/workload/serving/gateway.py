"""The scale-to-zero gateway: two small always-on pods on the system nodes
between the ALB and the inference Service (only when minReplicas is 0).

They forward every request to the inference Service and answer 503 with
Retry-After while it has no ready pod, and count what they receive for KEDA
(model_image/sd21/gateway.py). No AWS role and no Kubernetes API access.
"""
from __future__ import annotations

import cdk8s
import cdk8s_plus_27 as kplus
from constructs import Construct
from sd21.contract import GatewayEnv

from k8s_charts.common import (
    default_seccomp, disruption_budget, drop_all_capabilities, place_on, report_failures_in_status, resources,
    scraped_pod_metadata, spread_softly, wait_for_deregistration,
)
from stacks.workload.serving.pod_security import restricted_container, restricted_pod
from stacks.workload.serving.sizing import GATEWAY_REPLICAS
from stacks.workload.serving.spec import (
    DEREGISTRATION_DELAY_SECONDS, HEALTH_PATH, SERVE_PORT, SERVICE_PORT, ScaleToZero, WorkloadSpec,
)

NAME = "sd21-gateway"
METRICS_PORT: int = GatewayEnv.var("metrics_port").default  # the image's own
REPLICAS = GATEWAY_REPLICAS  # the front door: one per node when it can, and a PDB keeps one up
# Clients are told to come back after this long while a replica starts.
COLD_RETRY_AFTER_SECONDS = 60
# What people waiting are told a cold start takes ("starting, about N s"): the README's
# cold-start budget until it is measured on inf2.
COLD_START_ESTIMATE_SECONDS = 300


class Gateway(Construct):
    def __init__(self, scope: Construct, id: str, *, spec: WorkloadSpec, scale_to_zero: ScaleToZero, namespace: str,
                 upstream: kplus.Service) -> None:
        super().__init__(scope, id)
        labels = {"app.kubernetes.io/name": NAME}
        metadata = cdk8s.ApiObjectMetadata(name=NAME, namespace=namespace)
        self.service_account = kplus.ServiceAccount(self, "ServiceAccount", metadata=metadata, automount_token=False)
        self.deployment = kplus.Deployment(
            self,
            "Deployment",
            metadata=metadata,
            replicas=REPLICAS,
            service_account=self.service_account,
            security_context=restricted_pod(),
            termination_grace_period=cdk8s.Duration.seconds(spec.endpoint.termination_grace_seconds),
            select=False,
            pod_metadata=scraped_pod_metadata(labels, METRICS_PORT),
        )
        self.deployment.select(kplus.LabelSelector.of(labels=labels))
        self.upstream_url = f"http://{upstream.name}.{namespace}.svc:{SERVICE_PORT}"
        health = dict(port=SERVE_PORT, period_seconds=cdk8s.Duration.seconds(10))
        self.deployment.add_container(
            name="gateway",
            image=spec.gateway_image,
            command=["sd21-gateway"],
            ports=[kplus.ContainerPort(number=SERVE_PORT, name="http"),
                   kplus.ContainerPort(number=METRICS_PORT, name="metrics")],
            env_variables={
                name: kplus.EnvValue.from_value(value)
                for name, value in {
                    **GatewayEnv(
                        upstream=self.upstream_url,
                        port=SERVE_PORT,
                        metrics_port=METRICS_PORT,
                        request_timeout_s=spec.endpoint.request_timeout_seconds,
                        cold_retry_after_s=COLD_RETRY_AFTER_SECONDS,
                        hold_requests=scale_to_zero.hold_requests,
                        hold_s=scale_to_zero.hold_seconds,
                        cold_start_s=COLD_START_ESTIMATE_SECONDS,
                        # The model the servers serve: the gateway refuses another before holding or queueing.
                        model_name=spec.model.name,
                    ).to_env(),
                    **spec.cloudwatch_env(),
                    # It takes jobs while no replica exists: it enqueues, the servers work.
                    **spec.job_env(),
                }.items()
            },
            resources=resources(cpu_millis=100, memory_mib=128, memory_limit_mib=256),
            security_context=restricted_container(),
            readiness=kplus.Probe.from_http_get(HEALTH_PATH, **health),
            liveness=kplus.Probe.from_http_get(HEALTH_PATH, failure_threshold=3, **health),
        )
        place_on(self.deployment, spec.system_node_label)
        wait_for_deregistration(self.deployment, DEREGISTRATION_DELAY_SECONDS)
        spread_softly(self.deployment, "kubernetes.io/hostname", labels)
        drop_all_capabilities(self.deployment, 0)
        default_seccomp(self.deployment)
        report_failures_in_status(self.deployment)

        self.service = kplus.Service(
            self,
            "Service",
            metadata=metadata,
            selector=self.deployment,
            ports=[kplus.ServicePort(port=SERVICE_PORT, target_port=SERVE_PORT, name="http")],
            type=kplus.ServiceType.CLUSTER_IP,
        )
        self.disruption_budget = disruption_budget(self, metadata, labels)

