"""The workload charts, attached to the cluster as KubernetesManifest resources."""
import cdk8s
from aws_cdk import aws_ecr as ecr, aws_eks_v2 as eks, aws_s3 as s3
from constructs import Construct

from k8s_charts.workload.compile_job import CompileJobChart
from k8s_charts.workload.identities import WorkloadIdentities
from k8s_charts.workload.inference import InferenceChart
from k8s_charts.workload.spec import WorkloadSpec
from stacks.cluster.eks import SYSTEM_NODE_LABEL
from stacks.cluster.manifests import attach_chart
from stacks.settings import Settings


class WorkloadManifests(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, cluster: eks.ICluster,
                 repository: ecr.IRepository, bucket: s3.IBucket, jobs_env: dict) -> None:
        super().__init__(scope, id)
        self.spec = WorkloadSpec.build(settings, repository, bucket, SYSTEM_NODE_LABEL, jobs_env)
        charts = cdk8s.App()
        self.identities = WorkloadIdentities(charts, "sd21-identities")
        self.compile_chart = CompileJobChart(charts, "sd21-compile", spec=self.spec, identities=self.identities)
        self.inference_chart = InferenceChart(charts, "sd21-inference", spec=self.spec, identities=self.identities)

        self.identities_manifest = attach_chart(self, "Identities", cluster, self.identities)
        self.compile_manifest = attach_chart(self, "CompileJob", cluster, self.compile_chart)
        self.inference_manifest = attach_chart(self, "Inference", cluster, self.inference_chart)
        for manifest in (self.compile_manifest, self.inference_manifest):
            manifest.node.add_dependency(self.identities_manifest)
