"""Neuron scheduler extension: the HTTP extender my-scheduler calls to filter nodes and bind pods.

It picks contiguous NeuronCores/devices on a node and records the choice on the
pod for the device plugin. A Deployment and a Service (port 12345) with RBAC
as in the Neuron Helm chart, placed on the system node group.
"""
from __future__ import annotations

import cdk8s
import cdk8s_plus_27 as kplus
from constructs import Construct

from k8s_charts.common import CLUSTER_CRITICAL, drop_all_capabilities, place_on, resources, set_priority_class

IMAGE_REPOSITORY = "public.ecr.aws/neuron/neuron-scheduler"
NAME = "neuron-scheduler-extension"
NAMESPACE = "kube-system"
PORT = 12345


class NeuronSchedulerExtensionChart(cdk8s.Chart):
    """`service` is the object my-scheduler's extender URL is built from."""

    def __init__(self, scope: Construct, id: str, *, version: str, system_node_label: tuple[str, str]) -> None:
        super().__init__(scope, id)
        metadata = cdk8s.ApiObjectMetadata(name=NAME, namespace=NAMESPACE)
        self.service_account = kplus.ServiceAccount(self, "ServiceAccount", metadata=metadata, automount_token=True)
        role = self._cluster_role()
        kplus.ClusterRoleBinding(
            self, "Binding", metadata=cdk8s.ApiObjectMetadata(name=NAME), role=role
        ).add_subjects(self.service_account)

        self.deployment = kplus.Deployment(
            self,
            "Deployment",
            metadata=metadata,
            pod_metadata=cdk8s.ApiObjectMetadata(labels={"app.kubernetes.io/name": NAME}),
            # Device assignments live in this process's memory: exactly one, and
            # the old one gone before the new one serves.
            replicas=1,
            strategy=kplus.DeploymentStrategy.recreate(),
            service_account=self.service_account,
            automount_service_account_token=True,
            security_context=kplus.PodSecurityContextProps(ensure_non_root=True, user=65532, group=65532),
        )
        self.deployment.add_container(
            name="neuron-scheduler",
            image=f"{IMAGE_REPOSITORY}:{version}",
            image_pull_policy=kplus.ImagePullPolicy.IF_NOT_PRESENT,  # pinned tag
            env_variables={"PORT": kplus.EnvValue.from_value(str(PORT))},
            ports=[kplus.ContainerPort(number=PORT, name="http")],
            readiness=kplus.Probe.from_tcp_socket(port=PORT),
            liveness=kplus.Probe.from_tcp_socket(port=PORT, initial_delay_seconds=cdk8s.Duration.seconds(10)),
            resources=resources(cpu_millis=50, memory_mib=128, memory_limit_mib=256),
            security_context=kplus.ContainerSecurityContextProps(
                ensure_non_root=True, user=65532, group=65532, privileged=False,
                allow_privilege_escalation=False, read_only_root_filesystem=True,
            ),
        )
        drop_all_capabilities(self.deployment, container_index=0)
        place_on(self.deployment, system_node_label)
        # Neuron pods cannot be scheduled while it is down.
        set_priority_class(self.deployment, CLUSTER_CRITICAL)

        self.service = kplus.Service(
            self,
            "Service",
            metadata=metadata,
            selector=self.deployment,
            ports=[kplus.ServicePort(port=PORT, target_port=PORT, name="http")],
        )

    def _cluster_role(self) -> kplus.ClusterRole:
        """The Neuron Helm chart's scheduler role (the variant used with a custom scheduler)."""
        role = kplus.ClusterRole(self, "ClusterRole", metadata=cdk8s.ApiObjectMetadata(name=NAME))
        role.allow(["get", "list", "watch"], kplus.ApiResource.NODES)
        # Tracks free cores/devices per node.
        role.allow(["get", "list", "watch", "patch", "update"],
                   kplus.ApiResource.custom(api_group="", resource_type="nodes/status"))
        # Annotates pods with the assigned devices; binds them (the bind verb).
        role.allow(["get", "list", "watch", "patch", "update"], kplus.ApiResource.PODS)
        role.allow(["create"], kplus.ApiResource.BINDINGS, kplus.ApiResource.custom(api_group="", resource_type="pods/binding"))
        role.allow(["create", "patch"], kplus.ApiResource.EVENTS)
        return role
