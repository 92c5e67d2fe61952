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
from stacks.workload.kubectl import WorkloadKubectl
from stacks.workload.serving.manifests import WorkloadManifests


class WorkloadStack(Stack):
    """The SD2.1 workload: compile Job, inference Deployment/Service/Ingress and
    autoscaling, with the storage roles bound to its ServiceAccounts by Pod Identity."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, cluster: eks.ICluster,
                 repository: ecr.IRepository, bucket: s3.IBucket, access: ModelAccessRoles, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        # Its own kubectl provider: nothing here calls a Lambda of the Cluster stack.
        self.kubectl = WorkloadKubectl(self, "Kubectl", settings=settings, cluster=cluster)
        cluster = self.kubectl.cluster
        self.jobs = JobQueue(self, "Jobs", settings=settings)
        self.manifests = WorkloadManifests(self, "Manifests", settings=settings, cluster=cluster,
                                           repository=repository, bucket=bucket, jobs_env=self.jobs.env())
        identities = self.manifests.identities
        self.compile_binding, self.serve_binding = (
            PodIdentityBinding(self, id, cluster_name=cluster.cluster_name, namespace=account.metadata.namespace,
                               service_account=account.name, role=role)
            for id, account, role in (("CompileIdentity", identities.compile_account, access.compile_role),
                                      ("ServeIdentity", identities.serve_account, access.serve_role)))
        # Pod Identity injects credentials when a pod is created: effective associations first.
        self.manifests.compile_manifest.node.add_dependency(self.compile_binding)
        self.manifests.inference_manifest.node.add_dependency(self.serve_binding)
        self.autoscaling = Autoscaling(self, "Autoscaling", settings=settings, cluster=cluster,
                                       manifests=self.manifests, jobs=self.jobs)
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
            self, "ColdStartPhases", cluster=cluster, spec=self.manifests.spec,
            namespace=identities.workload_namespace.name, prometheus_url=PROMETHEUS_URL, node_pool=NODE_POOL_NAME)
        self.cold_start.manifest.node.add_dependency(self.manifests.identities_manifest, self.autoscaling.prometheus)
        publishers.append(self.cold_start.role)
        # The servers take jobs (and, with a minimum of one replica, accept them too).
        self.jobs.grant(self, "ServeWorksJobs", access.serve_role,
                        self.jobs.enqueue_statements() + self.jobs.work_statements())
        self.observability = EndpointObservability(
            self, "Observability", settings=settings, namespace=identities.workload_namespace.name,
            deployment=self.manifests.inference_chart.deployment.name, publishers=publishers)
        for resource in self.node.find_all():
            if isinstance(resource, (eks.KubernetesManifest, eks.HelmChart)):
                self.kubectl.after_access(resource)
