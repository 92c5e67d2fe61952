"""The inference service: a Deployment whose initContainer stages the compiled
model from S3 into an emptyDir, the server that serves it, and the Service,
Ingress (ALB) and PodDisruptionBudget around it.

KEDA's ScaledObject (stacks/workload/autoscaling/scaling.py) owns the replica count. At
minReplicas 0 (spec.scale_to_zero) the Ingress points at the gateway, which
stays up at zero.
"""
import json

import cdk8s
import cdk8s_plus_27 as kplus
from constructs import Construct
from sd21.contract import ServerEnv

from k8s_charts.common import (
    default_seccomp, disruption_budget, drop_all_capabilities, report_failures_in_status, scraped_pod_metadata,
    spread_softly, wait_for_deregistration,
)
from stacks.cluster.neuron.hardware import NEURON_DEVICE
from stacks.cluster.neuron.my_scheduler import SCHEDULER_NAME
from stacks.workload.serving.gateway import Gateway
from stacks.workload.serving.identities import WorkloadIdentities
from stacks.workload.serving.placement import run_on_inf2_pool
from stacks.workload.serving.pod_security import restricted_container, restricted_pod
from stacks.workload.serving.sizing import NEURON_DEVICES, SERVE_CPU_MILLI, SERVE_MEMORY_GIB
from stacks.workload.serving.spec import (
    APP_LABEL, DEREGISTRATION_DELAY_SECONDS, HEALTH_PATH, MODEL_DIR, READY_PATH, SERVE_PORT, SERVICE_PORT,
    IngressAccess, WorkloadSpec,
)

STAGE_CPU_MILLI = 1000
STAGE_MEMORY_GIB = 2
MODEL_DISK_GIB = 20
# Serving loads only from the staged directory: no hub, no telemetry; HOME on a writable emptyDir.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "GRADIO_ANALYTICS_ENABLED": "False", "HOME": "/tmp"}
# Loading the compiled model onto the NeuronCores and warming up takes minutes.
STARTUP_BUDGET_SECONDS = 900
# /ready answers from memory: probing it often costs nothing and takes a replica whose
# device broke out of the Service within READY_PERIOD x READY_FAILURES seconds. The
# server keeps answering 503 (not a refused connection) one period longer, then exits.
READY_PERIOD_SECONDS, READY_FAILURES = 2, 2
UNHEALTHY_EXIT_DELAY_SECONDS = READY_PERIOD_SECONDS * (READY_FAILURES + 1)


class InferenceChart(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str, *, spec: WorkloadSpec, identities: WorkloadIdentities) -> None:
        super().__init__(scope, id)
        self.spec = spec
        endpoint = spec.endpoint
        namespace = identities.workload_namespace.name
        labels = {"app.kubernetes.io/name": APP_LABEL, "sd21.aws/model-version": spec.model_version}
        self.deployment = kplus.Deployment(
            self,
            "Deployment",
            metadata=cdk8s.ApiObjectMetadata(name=APP_LABEL, namespace=namespace, labels=labels),
            service_account=identities.serve_account,
            security_context=restricted_pod(),
            termination_grace_period=cdk8s.Duration.seconds(endpoint.termination_grace_seconds),
            select=False,
            pod_metadata=scraped_pod_metadata(labels, SERVE_PORT),
            strategy=kplus.DeploymentStrategy.rolling_update(
                max_surge=kplus.PercentOrAbsolute.absolute(1),
                max_unavailable=kplus.PercentOrAbsolute.absolute(0)),
        )
        self.deployment.select(kplus.LabelSelector.of(labels={"app.kubernetes.io/name": APP_LABEL}))
        model = kplus.Volume.from_empty_dir(self, "model", "model", size_limit=cdk8s.Size.gibibytes(MODEL_DISK_GIB))
        tmp = kplus.Volume.from_empty_dir(self, "tmp", "tmp", size_limit=cdk8s.Size.gibibytes(2))
        env = {name: kplus.EnvValue.from_value(value) for name, value in spec.model_env().items()}

        stage = self.deployment.add_init_container(
            name="stage",
            image=spec.image,
            command=["sd21-stage"],
            env_variables={**env, "HOME": kplus.EnvValue.from_value("/tmp")},
            resources=kplus.ContainerResources(
                cpu=kplus.CpuResources(request=kplus.Cpu.millis(STAGE_CPU_MILLI)),
                memory=kplus.MemoryResources(request=cdk8s.Size.gibibytes(STAGE_MEMORY_GIB),
                                             limit=cdk8s.Size.gibibytes(STAGE_MEMORY_GIB)),
            ),
            security_context=restricted_container(),
        )
        stage.mount(MODEL_DIR, model)
        stage.mount("/tmp", tmp)

        server = self.deployment.add_container(
            name="server",
            image=spec.image,
            command=["sd21-serve"],
            port_number=SERVE_PORT,
            env_variables={
                name: kplus.EnvValue.from_value(value)
                for name, value in {
                    **spec.model_env(),
                    **ServerEnv(
                        port=SERVE_PORT,
                        queue_size=endpoint.queue_size,
                        request_timeout_s=endpoint.request_timeout_seconds,
                        drain_grace_s=endpoint.drain_grace_seconds,
                        max_consecutive_failures=endpoint.device_failures_before_restart,
                        watchdog_factor=endpoint.hang_factor,
                        watchdog_min_s=endpoint.hang_minimum_seconds,
                        unhealthy_exit_delay_s=UNHEALTHY_EXIT_DELAY_SECONDS,
                    ).to_env(),
                    **spec.cloudwatch_env(),
                    **spec.job_env(),
                    **OFFLINE_ENV,
                }.items()
            },
            resources=kplus.ContainerResources(
                cpu=kplus.CpuResources(request=kplus.Cpu.millis(SERVE_CPU_MILLI)),
                memory=kplus.MemoryResources(request=cdk8s.Size.gibibytes(SERVE_MEMORY_GIB),
                                             limit=cdk8s.Size.gibibytes(SERVE_MEMORY_GIB)),
                ephemeral_storage=kplus.EphemeralStorageResources(request=cdk8s.Size.gibibytes(MODEL_DISK_GIB)),
            ),
            security_context=restricted_container(),
            # Started = loaded and warmed: a load that fails never becomes ready, so the
            # pod is restarted once the budget is spent instead of idling unready.
            startup=kplus.Probe.from_http_get(READY_PATH, port=SERVE_PORT, period_seconds=cdk8s.Duration.seconds(10),
                                              failure_threshold=STARTUP_BUDGET_SECONDS // 10),
            readiness=kplus.Probe.from_http_get(READY_PATH, port=SERVE_PORT,
                                                period_seconds=cdk8s.Duration.seconds(READY_PERIOD_SECONDS),
                                                failure_threshold=READY_FAILURES),
            liveness=kplus.Probe.from_http_get(HEALTH_PATH, port=SERVE_PORT,
                                               period_seconds=cdk8s.Duration.seconds(15), failure_threshold=4,
                                               timeout_seconds=cdk8s.Duration.seconds(5)),
        )
        server.mount(MODEL_DIR, model, read_only=True)
        server.mount("/tmp", tmp)

        run_on_inf2_pool(self.deployment)
        self._patch_pod_spec(spec)

        self.service = kplus.Service(
            self,
            "Service",
            metadata=cdk8s.ApiObjectMetadata(name=APP_LABEL, namespace=namespace),
            selector=self.deployment,
            ports=[kplus.ServicePort(port=SERVICE_PORT, target_port=SERVE_PORT, name="http")],
            type=kplus.ServiceType.CLUSTER_IP,
        )
        # With a minimum of 0 the gateway answers while no replica exists; otherwise
        # the ALB sends straight to the pods.
        self.gateway = (Gateway(self, "Gateway", spec=spec, scale_to_zero=spec.scale_to_zero, namespace=namespace,
                                upstream=self.service)
                        if spec.scale_to_zero else None)
        front = self.gateway.service if self.gateway else self.service
        self.ingress = kplus.Ingress(
            self,
            "Ingress",
            metadata=cdk8s.ApiObjectMetadata(
                name=APP_LABEL, namespace=namespace,
                annotations=ingress_annotations(spec.ingress, spec.alb_idle_timeout_seconds)),
            class_name="alb",
            default_backend=kplus.IngressBackend.from_service(front, port=SERVICE_PORT),
        )
        # A node drained for a new AMI (drift) or consolidation never takes the only ready
        # replica: the drain waits until another one is ready (scale up, or raise minReplicas).
        self.disruption_budget = disruption_budget(
            self, cdk8s.ApiObjectMetadata(name=APP_LABEL, namespace=namespace),
            {"app.kubernetes.io/name": APP_LABEL}, keep_one_ready=True)
        # KEDA owns the count: an applied `replicas` would reset it on every deploy (and wake
        # the endpoint at zero).
        cdk8s.ApiObject.of(self.deployment).add_json_patch(cdk8s.JsonPatch.remove("/spec/replicas"))

    def _patch_pod_spec(self, spec: WorkloadSpec) -> None:
        """Fields cdk8s-plus-27 has no API for."""
        api = cdk8s.ApiObject.of(self.deployment)
        pod = "/spec/template/spec"
        # my-scheduler asks the Neuron scheduler extension for contiguous cores/devices.
        api.add_json_patch(cdk8s.JsonPatch.add(f"{pod}/schedulerName", SCHEDULER_NAME))
        # JSON Pointer spells "/" inside a key as "~1". The patch lands before the
        # Deployment's quantities are serialized, so it takes a Quantity's shape.
        neuron = NEURON_DEVICE.replace("/", "~1")
        api.add_json_patch(cdk8s.JsonPatch.add(f"{pod}/containers/0/resources/limits/{neuron}",
                                               {"value": str(NEURON_DEVICES)}))
        wait_for_deregistration(self.deployment, DEREGISTRATION_DELAY_SECONDS)
        spread_softly(self.deployment, "topology.kubernetes.io/zone", {"app.kubernetes.io/name": APP_LABEL})
        drop_all_capabilities(self.deployment, 0, init=True)
        drop_all_capabilities(self.deployment, 0)
        default_seccomp(self.deployment)
        report_failures_in_status(self.deployment)


def ingress_annotations(access: IngressAccess, idle_timeout_seconds: int) -> dict[str, str]:
    annotations = {
        "alb.ingress.kubernetes.io/scheme": access.scheme,
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/healthcheck-path": HEALTH_PATH,
        "alb.ingress.kubernetes.io/success-codes": "200",
        "alb.ingress.kubernetes.io/target-group-attributes":
            f"deregistration_delay.timeout_seconds={DEREGISTRATION_DELAY_SECONDS}",
        # Longer than the slowest accepted request (queue wait + generation).
        "alb.ingress.kubernetes.io/load-balancer-attributes":
            f"idle_timeout.timeout_seconds={idle_timeout_seconds}",
    }
    if access.allowed_cidrs:
        annotations["alb.ingress.kubernetes.io/inbound-cidrs"] = ",".join(access.allowed_cidrs)
    if access.certificate_arn:
        annotations.update({
            "alb.ingress.kubernetes.io/certificate-arn": access.certificate_arn,
            "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTPS": 443}]),
            "alb.ingress.kubernetes.io/ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        })
    else:
        annotations["alb.ingress.kubernetes.io/listen-ports"] = json.dumps([{"HTTP": 80}])
    return annotations
