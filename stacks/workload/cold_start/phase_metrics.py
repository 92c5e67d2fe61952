"""The cold-start phases before our containers run (node launch, join, image pull), as
CloudWatch figures: the sd21-cold-start-metrics pod (stacks/workload/cold_start/metrics_chart.py)
and its Pod Identity role, which EndpointObservability lets publish to our namespace."""
from __future__ import annotations

import cdk8s
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from stacks.workload.cold_start.metrics_chart import ColdStartMetricsChart
from stacks.workload.serving.spec import WorkloadSpec
from stacks.cluster.eks.manifests import attach_chart
from stacks.pod_identity import PodIdentityBinding, pod_identity_role


class ColdStartPhaseMetrics(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, spec: WorkloadSpec, namespace: str,
                 prometheus_url: str, node_pool: str) -> None:
        super().__init__(scope, id)
        self.chart = ColdStartMetricsChart(cdk8s.App(), "sd21-cold-start-metrics", spec=spec, namespace=namespace,
                                           prometheus_url=prometheus_url, node_pool=node_pool)
        self.role = pod_identity_role(self, "Role", "sd21-cold-start-metrics: publish the cold-start phases")
        account = self.chart.service_account
        self.binding = PodIdentityBinding(self, "Identity", cluster_name=cluster.cluster_name,
                                          namespace=account.metadata.namespace, service_account=account.name,
                                          role=self.role)
        self.manifest = attach_chart(self, "Manifest", cluster, self.chart)
        # Credentials are injected when the pod is created: the association first.
        self.manifest.node.add_dependency(self.binding)
