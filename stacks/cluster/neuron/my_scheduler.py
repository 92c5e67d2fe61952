"""my-scheduler: a second kube-scheduler whose extender is the Neuron scheduler extension.

Pods that request Neuron resources set `schedulerName: my-scheduler`; for them
the scheduler calls the extension's filter and bind verbs, so that the cores
and devices a pod gets are contiguous. Same Kubernetes minor as the cluster.
"""
from __future__ import annotations

import cdk8s
import cdk8s_plus_27 as kplus
import yaml
from constructs import Construct

from k8s_charts.common import CLUSTER_CRITICAL, drop_all_capabilities, NamedResource, place_on, resources, set_priority_class
from stacks.cluster.neuron.hardware import MANAGED_RESOURCES

SCHEDULER_NAME = "my-scheduler"  # what workload pods put in spec.schedulerName
NAMESPACE = "kube-system"
CONFIG_DIR = "/etc/kubernetes/my-scheduler"
CONFIG_FILE = "my-scheduler-config.yaml"
SECURE_PORT = 10259  # kube-scheduler's HTTPS port (/healthz, /metrics)


def extender_url(service: kplus.Service) -> str:
    """The in-cluster DNS URL of the extension Service, from the object itself."""
    return f"http://{service.name}.{service.metadata.namespace}.svc.cluster.local:{service.port}"


def scheduler_configuration(service: kplus.Service) -> dict:
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "profiles": [{"schedulerName": SCHEDULER_NAME}],
        "extenders": [{
            "urlPrefix": extender_url(service),
            "filterVerb": "filter",
            "bindVerb": "bind",
            "enableHTTPS": False,
            # The extension keeps its own node cache; send node names only.
            "nodeCacheCapable": True,
            "managedResources": [{"name": name, "ignoredByScheduler": False} for name in MANAGED_RESOURCES],
            # A Neuron pod must never be placed without the extension's device choice.
            "ignorable": False,
        }],
        "leaderElection": {
            "leaderElect": True,
            "resourceLock": "leases",
            "resourceNamespace": NAMESPACE,
            "resourceName": SCHEDULER_NAME,
        },
    }


class MySchedulerChart(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str, *, image: str, extension_service: kplus.Service,
                 system_node_label: tuple[str, str], replicas: int) -> None:
        super().__init__(scope, id)
        metadata = cdk8s.ApiObjectMetadata(name=SCHEDULER_NAME, namespace=NAMESPACE)
        self.service_account = kplus.ServiceAccount(self, "ServiceAccount", metadata=metadata, automount_token=True)
        self._rbac()

        self.config_map = kplus.ConfigMap(
            self,
            "Config",
            metadata=cdk8s.ApiObjectMetadata(name=f"{SCHEDULER_NAME}-config", namespace=NAMESPACE),
            data={CONFIG_FILE: yaml.safe_dump(scheduler_configuration(extension_service), sort_keys=False)},
        )
        self.deployment = kplus.Deployment(
            self,
            "Deployment",
            metadata=metadata,
            pod_metadata=cdk8s.ApiObjectMetadata(labels={"app.kubernetes.io/name": SCHEDULER_NAME}),
            # Leader election makes extra replicas hot standbys.
            replicas=replicas,
            service_account=self.service_account,
            automount_service_account_token=True,
            security_context=kplus.PodSecurityContextProps(ensure_non_root=True, user=65532, group=65532),
        )
        https = kplus.ConnectionScheme.HTTPS
        container = self.deployment.add_container(
            name="kube-scheduler",
            image=image,
            image_pull_policy=kplus.ImagePullPolicy.IF_NOT_PRESENT,  # pinned tag
            command=["/usr/local/bin/kube-scheduler"],
            args=[f"--config={CONFIG_DIR}/{CONFIG_FILE}", "--v=2"],
            ports=[kplus.ContainerPort(number=SECURE_PORT, name="https")],
            liveness=kplus.Probe.from_http_get("/healthz", port=SECURE_PORT, scheme=https,
                                               initial_delay_seconds=cdk8s.Duration.seconds(15)),
            readiness=kplus.Probe.from_http_get("/healthz", port=SECURE_PORT, scheme=https),
            resources=resources(cpu_millis=100, memory_mib=128, memory_limit_mib=512),
            security_context=kplus.ContainerSecurityContextProps(
                ensure_non_root=True, user=65532, group=65532, privileged=False,
                allow_privilege_escalation=False, read_only_root_filesystem=True,
            ),
        )
        container.mount(CONFIG_DIR, kplus.Volume.from_config_map(self, "ConfigVolume", self.config_map),
                        read_only=True)
        drop_all_capabilities(self.deployment, container_index=0)
        place_on(self.deployment, system_node_label)
        # Neuron pods stay Pending while no scheduler runs.
        set_priority_class(self.deployment, CLUSTER_CRITICAL)

    def _rbac(self) -> None:
        """Bind the built-in scheduler roles, plus what they grant only to the default scheduler."""
        for role_name in ("system:kube-scheduler", "system:volume-scheduler"):
            role = kplus.ClusterRole.from_cluster_role_name(self, f"Role-{role_name}", role_name)
            kplus.ClusterRoleBinding(
                self, f"Binding-{role_name}",
                metadata=cdk8s.ApiObjectMetadata(name=f"{SCHEDULER_NAME}-as-{role_name.split(':')[1]}"),
                role=role,
            ).add_subjects(self.service_account)
        # system:kube-scheduler lets anyone create a lease but only read/renew "kube-scheduler".
        lease = kplus.Role(self, "LeaderElection",
                           metadata=cdk8s.ApiObjectMetadata(name=f"{SCHEDULER_NAME}-leader-election", namespace=NAMESPACE))
        lease.allow(["get", "update"], NamedResource("coordination.k8s.io", "leases", SCHEDULER_NAME))
        kplus.RoleBinding(
            self, "LeaderElectionBinding",
            metadata=cdk8s.ApiObjectMetadata(name=f"{SCHEDULER_NAME}-leader-election", namespace=NAMESPACE),
            role=lease,
        ).add_subjects(self.service_account)
        # Reading the client-CA configmap to authenticate callers of its HTTPS port:
        # the built-in role every kube-system component binds for that.
        reader = kplus.Role.from_role_name(self, "AuthReader", "extension-apiserver-authentication-reader")
        kplus.RoleBinding(
            self, "AuthReaderBinding",
            metadata=cdk8s.ApiObjectMetadata(name=f"{SCHEDULER_NAME}-authentication-reader", namespace=NAMESPACE),
            role=reader,
        ).add_subjects(self.service_account)
