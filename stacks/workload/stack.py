from aws_cdk import Stack, aws_ecr as ecr, aws_eks_v2 as eks, aws_s3 as s3
from constructs import Construct


from stacks.cluster.karpenter.node_pool import NODE_POOL_NAME
from stacks.workload.jobs.queue import JobQueue
from stacks.storage.access import ModelAccessRoles
from stacks.workload.cold_start.phase_metrics import ColdStartPhaseMetrics
from stacks.workload.observability.endpoint import EndpointObservability
from stacks.pod_identity import PodIdentityBinding
from stacks.settings import Settings
from stacks.workload.autoscaling.autoscaling import PROMETHEUS_URL, Autoscaling
from stacks.workload.autoscaling.scaling import Replicas
from stacks.workload.kubectl import WorkloadKubectl
from stacks.workload.serving.manifests import WorkloadManifests
from stacks.workload.serving.spec import Endpoint, IngressAccess, Model, ScaleToZero, WorkloadSpec
from stacks.cluster.eks.cluster import SYSTEM_NODE_LABEL
from stacks.storage.repository import compile_tag, gateway_tag


class WorkloadStack(Stack):
    """The SD2.1 workload: compile Job, inference Deployment/Service/Ingress and
    autoscaling, with the storage roles bound to its ServiceAccounts by Pod Identity."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, cluster: eks.ICluster,
                 repository: ecr.IRepository, bucket: s3.IBucket, access: ModelAccessRoles, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        # Its own kubectl provider: nothing here calls a Lambda of the Cluster stack.
        self.kubectl = WorkloadKubectl(self, "Kubectl", cluster=cluster, kubernetes_version=settings.cluster.kubernetes_version)
        cluster = self.kubectl.cluster
        self.jobs = JobQueue(self, "Jobs", request_timeout_seconds=settings.endpoint.request_timeout_seconds,
                             max_attempts=settings.endpoint.job_max_attempts,
                             url_expires_seconds=settings.endpoint.job_url_expires_seconds)
        self.manifests = WorkloadManifests(self, "Manifests", cluster=cluster, spec=workload_spec(
            settings, repository=repository, bucket=bucket, jobs_env=self.jobs.env()))
        identities = self.manifests.identities
        self.compile_binding, self.serve_binding = (
            PodIdentityBinding(self, id, cluster_name=cluster.cluster_name, namespace=account.metadata.namespace,
                               service_account=account.name, role=role)
            for id, account, role in (("CompileIdentity", identities.compile_account, access.compile_role),
                                      ("ServeIdentity", identities.serve_account, access.serve_role)))
        # Pod Identity injects credentials when a pod is created: effective associations first.
        self.manifests.compile_manifest.node.add_dependency(self.compile_binding)
        self.manifests.inference_manifest.node.add_dependency(self.serve_binding)
        self.autoscaling = Autoscaling(
            self, "Autoscaling", cluster=cluster, manifests=self.manifests, jobs=self.jobs,
            replicas=Replicas(min_replicas=settings.endpoint.min_replicas, max_replicas=settings.endpoint.max_replicas,
                              target_pending_per_replica=settings.endpoint.target_pending_per_replica,
                              scale_to_zero_after_seconds=settings.endpoint.scale_to_zero_after_seconds),
            prometheus_chart_version=settings.endpoint.prometheus_chart_version,
            keda_chart_version=settings.endpoint.keda_chart_version)
        publishers = [access.serve_role]
        gateway = self.manifests.inference_chart.gateway
        if gateway is not None:  # scale to zero: the gateway publishes its cold requests
            gateway_role = access.gateway_role
            self.gateway_binding = PodIdentityBinding(
                self, "GatewayIdentity", cluster_name=cluster.cluster_name,
                namespace=gateway.service_account.metadata.namespace, service_account=gateway.service_account.name,
                role=gateway_role)
            self.manifests.inference_manifest.node.add_dependency(self.gateway_binding)
            publishers.append(gateway_role)
            self.jobs.grant(self, "GatewayEnqueuesJobs", gateway_role, self.jobs.enqueue_statements())
        self.cold_start = ColdStartPhaseMetrics(
            self, "ColdStartPhases", cluster=cluster, cluster_name=settings.cluster.cluster_name,
            image=self.manifests.spec.gateway_image, namespace=identities.workload_namespace.name,
            system_node_label=SYSTEM_NODE_LABEL, prometheus_url=PROMETHEUS_URL, node_pool=NODE_POOL_NAME)
        self.cold_start.manifest.node.add_dependency(self.manifests.identities_manifest, self.autoscaling.prometheus)
        publishers.append(self.cold_start.role)
        # The servers take jobs (and, with a minimum of one replica, accept them too).
        self.jobs.grant(self, "ServeWorksJobs", access.serve_role,
                        self.jobs.enqueue_statements() + self.jobs.work_statements())
        self.observability = EndpointObservability(
            self, "Observability", cluster_name=settings.cluster.cluster_name, namespace=identities.workload_namespace.name,
            deployment=self.manifests.inference_chart.deployment.name, publishers=publishers,
            scales_to_zero=settings.endpoint.scales_to_zero, alarm_email=settings.alarms.alarm_email,
            no_ready_replica_minutes=settings.alarms.no_ready_replica_minutes,
            error_ratio_alarm_percent=settings.alarms.error_ratio_alarm_percent,
            latency_slo_seconds=settings.alarms.latency_slo_seconds, inf2_hourly_usd=settings.endpoint.inf2_xlarge_hourly_usd)
        for resource in self.node.find_all():
            if isinstance(resource, (eks.KubernetesManifest, eks.HelmChart)):
                self.kubectl.after_access(resource)


def workload_spec(settings: Settings, *, repository: ecr.IRepository, bucket: s3.IBucket,
                  jobs_env: dict) -> WorkloadSpec:
    """What the charts read, from the settings and the CDK objects (tokens until deploy)."""
    model = Model(name=settings.model.model_name, id=settings.model.model_id, revision=settings.model.model_revision,
                  neuron_sdk=settings.model.neuron_sdk, weights_source=settings.model.weights_source)
    return WorkloadSpec(
        model=model,
        endpoint=Endpoint(queue_size=settings.endpoint.queue_size, request_timeout_seconds=settings.endpoint.request_timeout_seconds,
                          device_failures_before_restart=settings.endpoint.device_failures_before_restart,
                          hang_factor=settings.endpoint.hang_factor, hang_minimum_seconds=settings.endpoint.hang_minimum_seconds),
        ingress=IngressAccess(scheme=settings.endpoint.ingress_scheme, allowed_cidrs=settings.endpoint.ingress_allowed_cidrs,
                              certificate_arn=settings.endpoint.certificate_arn),
        scale_to_zero=(ScaleToZero(hold_requests=settings.endpoint.cold_start_hold_requests,
                                   hold_seconds=settings.endpoint.cold_start_hold_seconds)
                       if settings.endpoint.scales_to_zero else None),
        compile_run=settings.model.compile_run,
        cluster_name=settings.cluster.cluster_name,
        image=repository.repository_uri_for_tag(settings.release.image_tag),
        gateway_image=repository.repository_uri_for_tag(gateway_tag(settings.release.image_tag)),
        bucket_name=bucket.bucket_name,
        system_node_label=SYSTEM_NODE_LABEL,
        jobs_env=dict(jobs_env),
        compile_image=repository.repository_uri_for_tag(compile_tag(model.version)),
    )
