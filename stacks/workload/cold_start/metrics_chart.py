"""sd21-cold-start-metrics: one small pod on the system nodes that reads the cold-start
phases before our containers run (node launch, registration and initialization from
Karpenter, image pull from the kubelet) from the in-cluster Prometheus and publishes
them to CloudWatch (model_image/sd21/cold_start_metrics.py). It runs from the gateway's
slim image, in both autoscaling modes: scaling up from one replica launches nodes too.
Its AWS role may only publish metrics; it has no Kubernetes API access.
"""
from __future__ import annotations

import cdk8s
import cdk8s_plus_27 as kplus
from constructs import Construct
from sd21.contract import ColdStartMetricsEnv

from k8s_charts.common import default_seccomp, drop_all_capabilities, place_on, report_failures_in_status, resources
from stacks.workload.serving.pod_security import restricted_container, restricted_pod
from stacks.workload.serving.spec import region_env

NAME = "sd21-cold-start-metrics"


class ColdStartMetricsChart(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str, *, image: str, namespace: str, cluster_name: str,
                 system_node_label: tuple[str, str], prometheus_url: str, node_pool: str) -> None:
        super().__init__(scope, id)
        labels = {"app.kubernetes.io/name": NAME}
        metadata = cdk8s.ApiObjectMetadata(name=NAME, namespace=namespace)
        self.service_account = kplus.ServiceAccount(self, "ServiceAccount", metadata=metadata, automount_token=False)
        # One replica: two would publish every point twice. A restart loses at most a period.
        self.deployment = kplus.Deployment(
            self, "Deployment", metadata=metadata, replicas=1, service_account=self.service_account,
            security_context=restricted_pod(), select=False, pod_metadata=cdk8s.ApiObjectMetadata(labels=labels),
            strategy=kplus.DeploymentStrategy.recreate())
        self.deployment.select(kplus.LabelSelector.of(labels=labels))
        self.deployment.add_container(
            name="cold-start-metrics",
            image=image,
            command=["sd21-cold-start-metrics"],
            env_variables={
                name: kplus.EnvValue.from_value(value)
                for name, value in {
                    **ColdStartMetricsEnv(prometheus_url=prometheus_url, node_pool=node_pool,
                                          cluster=cluster_name).to_env(),
                    **region_env(),
                }.items()
            },
            resources=resources(cpu_millis=20, memory_mib=64, memory_limit_mib=128),
            security_context=restricted_container(),
        )
        place_on(self.deployment, system_node_label)
        drop_all_capabilities(self.deployment, 0)
        default_seccomp(self.deployment)
        report_failures_in_status(self.deployment)
