"""Neuron device plugin: advertises aws.amazon.com/neuron and neuroncore on Neuron nodes.

A DaemonSet with the pinned public image, on Neuron instance types only,
tolerating the Neuron taint, with the RBAC the plugin uses and nothing more.
"""
from __future__ import annotations

import cdk8s
import cdk8s_plus_27 as kplus
from constructs import Construct

from k8s_charts.common import NODE_CRITICAL, drop_all_capabilities, resources, set_priority_class, tolerate
from stacks.cluster.neuron.hardware import NEURON_INSTANCE_TYPES, NEURON_TAINT

IMAGE_REPOSITORY = "public.ecr.aws/neuron/neuron-device-plugin"
NAME = "neuron-device-plugin"
NAMESPACE = "kube-system"  # system-node-critical pods are only admitted there
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


class NeuronDevicePluginChart(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str, *, version: str) -> None:
        super().__init__(scope, id)
        self.service_account = kplus.ServiceAccount(
            self, "ServiceAccount", metadata=cdk8s.ApiObjectMetadata(name=NAME, namespace=NAMESPACE),
            automount_token=True,
        )
        self.cluster_role = self._cluster_role()
        kplus.ClusterRoleBinding(
            self, "Binding", metadata=cdk8s.ApiObjectMetadata(name=NAME), role=self.cluster_role
        ).add_subjects(self.service_account)

        self.daemon_set = kplus.DaemonSet(
            self,
            "DaemonSet",
            metadata=cdk8s.ApiObjectMetadata(name=NAME, namespace=NAMESPACE),
            pod_metadata=cdk8s.ApiObjectMetadata(labels={"app.kubernetes.io/name": NAME}),
            service_account=self.service_account,
            # It talks to the API server (pods, nodes) with its own identity.
            automount_service_account_token=True,
            # It creates a socket in the kubelet's root-owned directory, so it runs
            # as root, but with no capabilities and no way to gain privileges.
            security_context=kplus.PodSecurityContextProps(ensure_non_root=False),
        )
        container = self.daemon_set.add_container(
            name=NAME,
            image=f"{IMAGE_REPOSITORY}:{version}",
            image_pull_policy=kplus.ImagePullPolicy.IF_NOT_PRESENT,  # pinned tag
            env_variables={"NODE_NAME": kplus.EnvValue.from_field_ref(kplus.EnvFieldPaths.NODE_NAME)},
            resources=resources(cpu_millis=50, memory_mib=64, memory_limit_mib=256),
            security_context=kplus.ContainerSecurityContextProps(
                ensure_non_root=False,
                privileged=False,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
            ),
        )
        drop_all_capabilities(self.daemon_set, container_index=0)
        # The kubelet's device-plugin registry (socket) and /run, where the plugin keeps
        # the Neuron device map. /run is read-write because upstream mounts it so and names
        # it for that map: aws-neuron/neuron-helm-charts charts/neuron-helm-chart/values.yaml
        # (commit 14049c2) has volume "infa-map", hostPath /run, mounted at /run without
        # readOnly. Which file under /run the plugin reads or writes is not public (the
        # plugin's source is not), so a narrower mount could not be shown to work.
        for volume_name, path in (("device-plugin", "/var/lib/kubelet/device-plugins"), ("run", "/run")):
            volume = kplus.Volume.from_host_path(
                self, f"Volume-{volume_name}", volume_name, path=path, type=kplus.HostPathVolumeType.DIRECTORY
            )
            container.mount(path, volume)
        # /opt/aws, read-only, as the Neuron Helm chart mounts it: aws-neuron/neuron-helm-charts
        # charts/neuron-helm-chart/values.yaml (stored at commit 14049c2, device plugin 2.28.27.0)
        # lists volume "aws-config", hostPath /opt/aws with no type, mounted at /opt/aws with
        # readOnly: true. That the 1.10.0 chart has it comes from a third-party `helm show values`
        # copy (2026-09); which file the plugin reads there could not be verified from here.
        aws_config = kplus.Volume.from_host_path(self, "Volume-aws-config", "aws-config", path="/opt/aws")
        container.mount("/opt/aws", aws_config, read_only=True)

        scheduling = self.daemon_set.scheduling
        scheduling.attract(kplus.Node.labeled(kplus.NodeLabelQuery.in_(INSTANCE_TYPE_LABEL, list(NEURON_INSTANCE_TYPES))))
        tolerate(scheduling, NEURON_TAINT)
        # EKS convention for add-ons that must run even on dedicated nodes.
        scheduling.tolerate(kplus.Node.tainted(kplus.NodeTaintQuery.exists("CriticalAddonsOnly")))
        # Without the plugin no Neuron pod can start on the node: never evict it first.
        set_priority_class(self.daemon_set, NODE_CRITICAL)

    def _cluster_role(self) -> kplus.ClusterRole:
        """The verbs of the Neuron Helm chart's device-plugin role, minus `nodes/proxy`.

        nodes/proxy (kubelet API, equivalent to exec into any pod on the node) is
        left out: the plugin gets the pods it needs from the API server.
        """
        role = kplus.ClusterRole(self, "ClusterRole", metadata=cdk8s.ApiObjectMetadata(name=NAME))
        role.allow(["get", "list", "watch"], kplus.ApiResource.NODES)
        # Reports allocatable devices and health on its own node.
        role.allow(["patch", "update"], kplus.ApiResource.custom(api_group="", resource_type="nodes/status"))
        # Reads the scheduler extension's device assignment and marks pods as allocated.
        role.allow(["get", "list", "watch", "update", "patch"], kplus.ApiResource.PODS)
        role.allow(["create", "patch"], kplus.ApiResource.EVENTS)
        return role
