"""Autoscaling of the inference Deployment, in one of two modes (settings.scales_to_zero).

Both: Prometheus scrapes the servers' queue gauges (and the gateway's counters).
* minReplicas >= 1: prometheus-adapter serves `sd21_pending_requests` (queued +
  in flight, per pod) on the custom metrics API; the chart's HPA follows it.
* minReplicas 0: KEDA (Helm) runs the ScaledObject of k8s_charts/workload/scale_to_zero.py
  on the same signal plus the gateway's count of received requests and the job queue's
  depth, which exist without pods.
Karpenter then adds or removes inf2 nodes for the pods.
"""
import cdk8s
from aws_cdk import Stack, aws_eks_v2 as eks
from constructs import Construct
from sd21.metric_names import INFLIGHT_REQUESTS as INFLIGHT_GAUGE

from k8s_charts.workload.inference import PENDING_METRIC
from k8s_charts.workload.scale_to_zero import ScaleToZeroChart
from stacks.cluster.eks import SYSTEM_NODE_LABEL
from stacks.cluster.manifests import HELM_TIMEOUT, attach_chart
from stacks.jobs.queue import JobQueue
from stacks.pod_identity import PodIdentityBinding, pod_identity_role
from stacks.settings import Settings
from stacks.workload.manifests import WorkloadManifests

NAMESPACE = "monitoring"
CHART_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
PROMETHEUS_RELEASE = "prometheus"
PROMETHEUS_URL = f"http://{PROMETHEUS_RELEASE}-server.{NAMESPACE}.svc"
KEDA_REPOSITORY = "https://kedacore.github.io/charts"
KEDA_NAMESPACE = "keda"
# The kedacore/keda chart's operator ServiceAccount (values serviceAccount.operator.name):
# not verified from here against chart 2.20.2; the Pod Identity association names it.
KEDA_OPERATOR_ACCOUNT = "keda-operator"


def adapter_rule() -> dict:
    return {
        "seriesQuery": f'{INFLIGHT_GAUGE}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{INFLIGHT_GAUGE}$", "as": PENDING_METRIC},
        "metricsQuery": f"sum({INFLIGHT_GAUGE}{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)",
    }


class Autoscaling(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, cluster: eks.ICluster,
                 manifests: WorkloadManifests, jobs: JobQueue) -> None:
        super().__init__(scope, id)
        self.on_system_nodes = dict([SYSTEM_NODE_LABEL])
        self.prometheus = self._prometheus(settings, cluster)
        self.adapter = self.keda = self.scaled_object_manifest = None
        if settings.scales_to_zero:
            self.keda = self._keda(settings, cluster)
            # KEDA's operator reads the job queue's depth with its own role.
            keda_role = pod_identity_role(self, "KedaRole", "KEDA operator: read the sd21 job queue's depth")
            jobs.grant(self, "KedaReadsQueueDepth", keda_role, jobs.depth_statements())
            self.keda_binding = PodIdentityBinding(self, "KedaIdentity", cluster_name=cluster.cluster_name,
                                                   namespace=KEDA_NAMESPACE, service_account=KEDA_OPERATOR_ACCOUNT,
                                                   role=keda_role)
            self.keda.node.add_dependency(self.keda_binding)
            self.scale_to_zero_chart = ScaleToZeroChart(
                cdk8s.App(), "sd21-scale-to-zero", settings=settings,
                target=manifests.inference_chart.deployment, prometheus_url=PROMETHEUS_URL,
                job_queue_url=jobs.queue.queue_url, region=Stack.of(self).region)
            self.scaled_object_manifest = attach_chart(self, "ScaledObject", cluster, self.scale_to_zero_chart)
            # KEDA's CRDs first; and the Deployment it scales must exist.
            self.scaled_object_manifest.node.add_dependency(self.keda, manifests.inference_manifest)
        else:
            self.adapter = self._adapter(settings, cluster)
            self.adapter.node.add_dependency(self.prometheus)

    def _prometheus(self, settings: Settings, cluster: eks.ICluster) -> eks.HelmChart:
        return _helm(
            self, "Prometheus", cluster, CHART_REPOSITORY, "prometheus", settings.prometheus_chart_version,
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
            },
        )

    def _adapter(self, settings: Settings, cluster: eks.ICluster) -> eks.HelmChart:
        return _helm(
            self, "Adapter", cluster, CHART_REPOSITORY, "prometheus-adapter",
            settings.prometheus_adapter_chart_version, NAMESPACE, values={
                "prometheus": {"url": PROMETHEUS_URL, "port": 80},
                "rules": {"default": False, "custom": [adapter_rule()]},
                "nodeSelector": self.on_system_nodes,
            },
        )

    def _keda(self, settings: Settings, cluster: eks.ICluster) -> eks.HelmChart:
        # Operator, metrics API server and admission webhooks, all on the system nodes.
        # Its operator's ServiceAccount (KEDA_OPERATOR_ACCOUNT) gets a Pod Identity role: the job queue's depth.
        # Waits until they run: the webhook must answer when the ScaledObject is applied.
        return _helm(self, "Keda", cluster, KEDA_REPOSITORY, "keda", settings.keda_chart_version, KEDA_NAMESPACE,
                     values={"nodeSelector": self.on_system_nodes}, wait=True)


def _helm(scope: Construct, id: str, cluster: eks.ICluster, repository: str, chart: str, version: str,
          namespace: str, *, values: dict, release: str | None = None, wait: bool = False) -> eks.HelmChart:
    """A pinned chart whose release is named after the chart unless told otherwise."""
    return eks.HelmChart(scope, id, cluster=cluster, chart=chart, repository=repository, version=version,
                         namespace=namespace, release=release or chart, values=values, wait=wait,
                         timeout=HELM_TIMEOUT)
