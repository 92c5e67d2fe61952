"""The workload charts, attached to the cluster as KubernetesManifest resources."""
import cdk8s
from aws_cdk import aws_ecr as ecr, aws_eks_v2 as eks, aws_s3 as s3
from constructs import Construct

from stacks.workload.serving.compile_job import CompileJobChart
from stacks.workload.serving.identities import WorkloadIdentities
from stacks.workload.serving.inference import InferenceChart
from stacks.workload.serving.spec import WorkloadSpec, compile_inputs
from sd21.artifact import artifact_version
from stacks.cluster.eks.cluster import SYSTEM_NODE_LABEL
from stacks.cluster.eks.manifests import attach_chart, keep_when_removed
from stacks.storage.repository import compile_tag, gateway_tag
from stacks.settings import Settings


def workload_spec(settings: Settings, repository: ecr.IRepository, bucket: s3.IBucket,
                  system_node_label: tuple[str, str], jobs_env: dict) -> WorkloadSpec:
    """What the charts need, from the settings and the CDK objects (tokens until deploy)."""
    version = artifact_version(compile_inputs(settings))
    return WorkloadSpec(
        settings=settings,
        image=repository.repository_uri_for_tag(settings.image_tag),
        gateway_image=repository.repository_uri_for_tag(gateway_tag(settings.image_tag)),
        bucket_name=bucket.bucket_name,
        model_version=version,
        system_node_label=system_node_label,
        jobs_env=dict(jobs_env),
        compile_image=repository.repository_uri_for_tag(compile_tag(version)),
    )


def workload_charts(spec: WorkloadSpec) -> tuple[WorkloadIdentities, CompileJobChart, InferenceChart]:
    """The endpoint's charts, in one cdk8s app; rendered alone (no synth) by the tests too."""
    charts = cdk8s.App()
    identities = WorkloadIdentities(charts, "sd21-identities")
    return (identities, CompileJobChart(charts, "sd21-compile", spec=spec, identities=identities),
            InferenceChart(charts, "sd21-inference", spec=spec, identities=identities))


class WorkloadManifests(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, cluster: eks.ICluster,
                 repository: ecr.IRepository, bucket: s3.IBucket, jobs_env: dict) -> None:
        super().__init__(scope, id)
        self.spec = workload_spec(settings, repository, bucket, SYSTEM_NODE_LABEL, jobs_env)
        self.identities, self.compile_chart, self.inference_chart = workload_charts(self.spec)

        self.identities_manifest = attach_chart(self, "Identities", cluster, self.identities)
        keep_when_removed(self.identities_manifest)  # it holds the namespace: deleting it deletes the workload
        self.compile_manifest = attach_chart(self, "CompileJob", cluster, self.compile_chart)
        self.inference_manifest = attach_chart(self, "Inference", cluster, self.inference_chart)
        for manifest in (self.compile_manifest, self.inference_manifest):
            manifest.node.add_dependency(self.identities_manifest)
