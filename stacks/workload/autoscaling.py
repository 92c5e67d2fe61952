"""The autoscaling signal: Prometheus scrapes each server's queue gauges and
prometheus-adapter serves `sd21_pending_requests` (queued + in flight, per pod)
on the custom metrics API, which the HorizontalPodAutoscaler follows. Karpenter
then adds or removes inf2 nodes for the pods."""
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from k8s_charts.workload.inference import PENDING_METRIC
from stacks.cluster.eks import SYSTEM_NODE_LABEL
from stacks.settings import Settings

NAMESPACE = "monitoring"
CHART_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
PROMETHEUS_RELEASE = "prometheus"
# The server's gauge (model_image/sd21/service.py) of accepted, unfinished
# requests: queued + running. (sd21_queue_depth is the queued part alone.)
INFLIGHT_GAUGE = "sd21_inflight_requests"


def adapter_rule() -> dict:
    return {
        "seriesQuery": f'{INFLIGHT_GAUGE}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{INFLIGHT_GAUGE}$", "as": PENDING_METRIC},
        "metricsQuery": f"sum({INFLIGHT_GAUGE}{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)",
    }


class PendingRequestsMetric(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, cluster: eks.ICluster) -> None:
        super().__init__(scope, id)
        on_system_nodes = dict([SYSTEM_NODE_LABEL])
        self.prometheus = eks.HelmChart(
            self, "Prometheus",
            cluster=cluster,
            chart="prometheus",
            repository=CHART_REPOSITORY,
            version=settings.prometheus_chart_version,
            namespace=NAMESPACE,
            release=PROMETHEUS_RELEASE,
            values={
                # Only the server: it keeps hours of samples for the autoscaler, nothing else.
                "alertmanager": {"enabled": False},
                "prometheus-pushgateway": {"enabled": False},
                "prometheus-node-exporter": {"enabled": False},
                "kube-state-metrics": {"enabled": False},
                "server": {
                    "retention": "6h",
                    "persistentVolume": {"enabled": False},
                    "nodeSelector": on_system_nodes,
                    "global": {"scrape_interval": "15s"},
                    "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                },
            },
        )
        self.adapter = eks.HelmChart(
            self, "Adapter",
            cluster=cluster,
            chart="prometheus-adapter",
            repository=CHART_REPOSITORY,
            version=settings.prometheus_adapter_chart_version,
            namespace=NAMESPACE,
            release="prometheus-adapter",
            values={
                "prometheus": {"url": f"http://{PROMETHEUS_RELEASE}-server.{NAMESPACE}.svc", "port": 80},
                "rules": {"default": False, "custom": [adapter_rule()]},
                "nodeSelector": on_system_nodes,
            },
        )
        self.adapter.node.add_dependency(self.prometheus)
