"""The cold-start phases before our containers run (node launch, join, image pull), as
CloudWatch figures: the sd21-cold-start-metrics pod (stacks/workload/cold_start/metrics_chart.py)
and its Pod Identity role, which EndpointObservability lets publish to our namespace."""
from __future__ import annotations

import cdk8s
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from stacks.workload.cold_start.metrics_chart import ColdStartMetricsChart
from stacks.cluster.eks.manifests import attach_chart
from stacks.pod_identity import PodIdentityBinding, pod_identity_role


class ColdStartPhaseMetrics(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, cluster_name: str, image: str,
                 namespace: str, system_node_label: tuple[str, str], prometheus_url: str, node_pool: str) -> None:
        """cluster_name: the CloudWatch dimension the figures are published under (the
        settings' clusterName, a plain string where cluster.cluster_name may be a token)."""
        super().__init__(scope, id)
        self.chart = ColdStartMetricsChart(
            cdk8s.App(), "sd21-cold-start-metrics", image=image, namespace=namespace, cluster_name=cluster_name,
            system_node_label=system_node_label, prometheus_url=prometheus_url, node_pool=node_pool)
        self.role = pod_identity_role(self, "Role", "sd21-cold-start-metrics: publish the cold-start phases")
        account = self.chart.service_account
        self.binding = PodIdentityBinding(self, "Identity", cluster_name=cluster.cluster_name,
                                          namespace=account.metadata.namespace, service_account=account.name,
                                          role=self.role)
        self.manifest = attach_chart(self, "Manifest", cluster, self.chart)
        # Credentials are injected when the pod is created: the association first.
        self.manifest.node.add_dependency(self.binding)
