"""The workload charts, attached to the cluster as KubernetesManifest resources."""
import cdk8s
from aws_cdk import aws_ecr as ecr, aws_eks_v2 as eks, aws_s3 as s3
from constructs import Construct

from k8s_charts.workload.compile_job import CompileJobChart
from k8s_charts.workload.identities import WorkloadIdentities
from k8s_charts.workload.inference import InferenceChart
from k8s_charts.workload.spec import WorkloadSpec, compile_inputs
from sd21.artifact import artifact_version
from stacks.cluster.eks import SYSTEM_NODE_LABEL
from stacks.cluster.manifests import attach_chart
from stacks.model_storage.repository import gateway_tag
from stacks.settings import Settings


def workload_spec(settings: Settings, repository: ecr.IRepository, bucket: s3.IBucket,
                  system_node_label: tuple[str, str], jobs_env: dict) -> WorkloadSpec:
    """What the charts need, from the settings and the CDK objects (tokens until deploy)."""
    return WorkloadSpec(
        settings=settings,
        image=repository.repository_uri_for_tag(settings.image_tag),
        gateway_image=repository.repository_uri_for_tag(gateway_tag(settings.image_tag)),
        bucket_name=bucket.bucket_name,
        model_version=artifact_version(compile_inputs(settings)),
        system_node_label=system_node_label,
        jobs_env=dict(jobs_env),
    )


class WorkloadManifests(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, cluster: eks.ICluster,
                 repository: ecr.IRepository, bucket: s3.IBucket, jobs_env: dict) -> None:
        super().__init__(scope, id)
        self.spec = workload_spec(settings, repository, bucket, SYSTEM_NODE_LABEL, jobs_env)
        charts = cdk8s.App()
        self.identities = WorkloadIdentities(charts, "sd21-identities")
        self.compile_chart = CompileJobChart(charts, "sd21-compile", spec=self.spec, identities=self.identities)
        self.inference_chart = InferenceChart(charts, "sd21-inference", spec=self.spec, identities=self.identities)

        self.identities_manifest = attach_chart(self, "Identities", cluster, self.identities)
        self.compile_manifest = attach_chart(self, "CompileJob", cluster, self.compile_chart)
        self.inference_manifest = attach_chart(self, "Inference", cluster, self.inference_chart)
        for manifest in (self.compile_manifest, self.inference_manifest):
            manifest.node.add_dependency(self.identities_manifest)
