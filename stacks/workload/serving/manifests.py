"""The workload charts, attached to the cluster as KubernetesManifest resources."""
import cdk8s
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from stacks.workload.serving.compile_job import CompileJobChart
from stacks.workload.serving.identities import WorkloadIdentities
from stacks.workload.serving.inference import InferenceChart
from stacks.workload.serving.spec import WorkloadSpec
from stacks.cluster.eks.manifests import attach_chart, keep_when_removed


def workload_charts(spec: WorkloadSpec) -> tuple[WorkloadIdentities, CompileJobChart, InferenceChart]:
    """The endpoint's charts, in one cdk8s app; rendered alone (no synth) by the tests too."""
    charts = cdk8s.App()
    identities = WorkloadIdentities(charts, "sd21-identities")
    return (identities, CompileJobChart(charts, "sd21-compile", spec=spec, identities=identities),
            InferenceChart(charts, "sd21-inference", spec=spec, identities=identities))


class WorkloadManifests(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, spec: WorkloadSpec) -> None:
        super().__init__(scope, id)
        self.spec = spec
        self.identities, self.compile_chart, self.inference_chart = workload_charts(self.spec)

        self.identities_manifest = attach_chart(self, "Identities", cluster, self.identities)
        keep_when_removed(self.identities_manifest)  # it holds the namespace: deleting it deletes the workload
        self.compile_manifest = attach_chart(self, "CompileJob", cluster, self.compile_chart)
        self.inference_manifest = attach_chart(self, "Inference", cluster, self.inference_chart)
        for manifest in (self.compile_manifest, self.inference_manifest):
            manifest.node.add_dependency(self.identities_manifest)
