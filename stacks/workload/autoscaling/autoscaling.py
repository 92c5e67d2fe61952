"""Autoscaling of the inference Deployment, the same in both modes: Prometheus scrapes
the servers' queue gauges (and, at minReplicas 0, the gateway's counters), and KEDA
(Helm) runs the ScaledObject of stacks/workload/autoscaling/scaling.py on them and on the job
queue's depth, which it reads with its own Pod Identity role. Karpenter then adds or
removes inf2 nodes for the pods.
"""
from urllib.parse import urlsplit

import cdk8s
import yaml
from aws_cdk import Stack, aws_eks_v2 as eks
from constructs import Construct

from stacks.workload.autoscaling.scaling import Replicas, ScalingChart
from stacks.cluster.eks.cluster import SYSTEM_NODE_LABEL
from stacks.cluster.eks.manifests import HELM_TIMEOUT, attach_chart
from stacks.workload.jobs.queue import JobQueue
from stacks.cluster.karpenter.controller import metrics_url as karpenter_metrics_url
from stacks.pod_identity import PodIdentityBinding, pod_identity_role
from stacks.workload.serving.manifests import WorkloadManifests

NAMESPACE = "monitoring"
CHART_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
PROMETHEUS_RELEASE = "prometheus"
PROMETHEUS_URL = f"http://{PROMETHEUS_RELEASE}-server.{NAMESPACE}.svc"
KEDA_REPOSITORY = "https://kedacore.github.io/charts"
KEDA_NAMESPACE = "keda"
# The kedacore/keda chart's operator ServiceAccount (values serviceAccount.operator.name):
# not verified from here against chart 2.20.2; the Pod Identity association names it.
KEDA_OPERATOR_ACCOUNT = "keda-operator"


def karpenter_scrape_config() -> str:
    url = urlsplit(karpenter_metrics_url())
    return yaml.safe_dump([{"job_name": "karpenter", "metrics_path": url.path,
                            "static_configs": [{"targets": [url.netloc]}]}], sort_keys=False)


class Autoscaling(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, manifests: WorkloadManifests,
                 jobs: JobQueue, replicas: Replicas, prometheus_chart_version: str, keda_chart_version: str) -> None:
        super().__init__(scope, id)
        self.on_system_nodes = dict([SYSTEM_NODE_LABEL])
        self.prometheus = self._prometheus(prometheus_chart_version, cluster)
        self.keda = self._keda(keda_chart_version, cluster)
        # KEDA's operator reads the job queue's depth with its own role.
        keda_role = pod_identity_role(self, "KedaRole", "KEDA operator: read the sd21 job queue's depth")
        jobs.grant(self, "KedaReadsQueueDepth", keda_role, jobs.depth_statements())
        self.keda_binding = PodIdentityBinding(self, "KedaIdentity", cluster_name=cluster.cluster_name,
                                               namespace=KEDA_NAMESPACE, service_account=KEDA_OPERATOR_ACCOUNT,
                                               role=keda_role)
        self.keda.node.add_dependency(self.keda_binding)
        self.scaling_chart = ScalingChart(
            cdk8s.App(), "sd21-scaling", replicas=replicas, target=manifests.inference_chart.deployment,
            prometheus_url=PROMETHEUS_URL, job_queue_url=jobs.queue.queue_url, region=Stack.of(self).region)
        self.scaled_object_manifest = attach_chart(self, "ScaledObject", cluster, self.scaling_chart)
        # KEDA's CRDs first; and the Deployment it scales must exist.
        self.scaled_object_manifest.node.add_dependency(self.keda, manifests.inference_manifest)

    def _prometheus(self, version: str, cluster: eks.ICluster) -> eks.HelmChart:
        return _helm(
            self, "Prometheus", cluster, CHART_REPOSITORY, "prometheus", version,
            NAMESPACE, release=PROMETHEUS_RELEASE, values={
                # Only the server: it keeps hours of samples for the autoscaler, nothing else.
                "alertmanager": {"enabled": False},
                "prometheus-pushgateway": {"enabled": False},
                "prometheus-node-exporter": {"enabled": False},
                "kube-state-metrics": {"enabled": False},
                "server": {
                    "retention": "6h",
                    "persistentVolume": {"enabled": False},
                    "nodeSelector": self.on_system_nodes,
                    "global": {"scrape_interval": "15s"},
                    "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                },
                # Karpenter's controller too: its NodeClaim timings are the node phases of a cold
                # start (sd21-cold-start-metrics). The chart's default jobs already scrape the
                # kubelets (kubernetes-nodes, with the nodes' labels). extraScrapeConfigs is a
                # YAML string in the chart's values.yaml (seen in 27.x and 29.x, merged by
                # templates/cm.yaml; PR #6429 for 28.0.0 says it "can still be used"; 28.0.0's own
                # files not seen from here).
                "extraScrapeConfigs": karpenter_scrape_config(),
            },
        )

    def _keda(self, version: str, cluster: eks.ICluster) -> eks.HelmChart:
        # Operator, metrics API server and admission webhooks, all on the system nodes.
        # Its operator's ServiceAccount (KEDA_OPERATOR_ACCOUNT) gets a Pod Identity role: the job queue's depth.
        # Waits until they run: the webhook must answer when the ScaledObject is applied.
        return _helm(self, "Keda", cluster, KEDA_REPOSITORY, "keda", version, KEDA_NAMESPACE,
                     values={"nodeSelector": self.on_system_nodes}, wait=True)


def _helm(scope: Construct, id: str, cluster: eks.ICluster, repository: str, chart: str, version: str,
          namespace: str, *, values: dict, release: str | None = None, wait: bool = False) -> eks.HelmChart:
    """A pinned chart whose release is named after the chart unless told otherwise."""
    return eks.HelmChart(scope, id, cluster=cluster, chart=chart, repository=repository, version=version,
                         namespace=namespace, release=release or chart, values=values, wait=wait,
                         timeout=HELM_TIMEOUT)
