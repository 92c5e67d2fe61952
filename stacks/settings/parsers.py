"""The value parsers of the settings: each takes the raw context value (a string when
given with `-c`), returns the typed value or raises ValueError saying what is allowed, and
carries that rule in words (`allowed`) for the settings reference."""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable

from stacks.cluster.load_balancing.versions import CHART_VERSIONS

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


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def allows(text: str):
    """What a parser accepts, in words: the settings reference (docs/settings.md) prints it."""
    def mark(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
        parse.allowed = text
        return parse
    return mark


def matching(pattern: re.Pattern, allowed: str) -> Callable[[Any], str]:
    @allows(allowed)
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not allowed; expected {allowed}")
        return value
    return parse


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @allows(f"{parse.allowed}, or empty")
    def parse_or_none(value: Any) -> Any:
        return None if value in ("", None) else parse(value)
    return parse_or_none


def choice(*choices: str) -> Callable[[Any], str]:
    @allows(" or ".join(choices))
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not allowed; choose one of {', '.join(choices)}")
        return value
    return parse


def whole(low: int, high: int) -> Callable[[Any], int]:
    @allows(f"{low} to {high}")
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not (isinstance(value, int) or re.fullmatch(r"-?[0-9]+", str(value))):
            raise ValueError(f"{value!r} is not a whole number (digits 0-9 only)")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range; allowed {low} to {high}")
        return number
    return parse


def items(value: Any) -> list:
    """A list given in cdk.json, or on the command line as JSON or comma-separated."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return list(json.loads(text))
        return [item.strip() for item in text.split(",") if item.strip()]
    raise ValueError(f"{value!r} is not a list")


@allows('IPv4 CIDRs (a JSON list or comma-separated)')
def cidrs(value: Any) -> tuple[str, ...]:
    result = []
    for item in items(value):
        result.append(cidr(item))
    return tuple(result)


def cidr(value: Any) -> str:
    try:
        network = ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a valid IPv4 CIDR ({err})") from None
    return str(network)


@allows('an IPv4 CIDR from /16 to /20')
def vpc_cidr(value: Any) -> str:
    network = cidr(value)
    prefix = ipaddress.IPv4Network(network).prefixlen
    if not 16 <= prefix <= 20:
        raise ValueError(f"{network} must be a /16 to /20 network (room for the subnets of every AZ)")
    return network


@allows("one of " + ", ".join(SUPPORTED_KUBERNETES))
def kubernetes_version(value: Any) -> str:
    version = str(value)
    if version not in SUPPORTED_KUBERNETES:
        raise ValueError(f"{version!r} is not supported; choose one of {', '.join(SUPPORTED_KUBERNETES)}")
    return version


@allows(f"{KARPENTER_MINOR}.x (the vendored CRDs' minor)")
def karpenter_version(value: Any) -> str:
    version = str(value)
    if not SEMVER.fullmatch(version) or not version.startswith(KARPENTER_MINOR + "."):
        raise ValueError(
            f"{version!r} is not allowed; expected {KARPENTER_MINOR}.x, the minor of the vendored Karpenter CRDs"
        )
    return version


@allows('a version with a vendored IAM policy (stacks/cluster/load_balancing/versions.py)')
def alb_controller_version(value: Any) -> str:
    version = "v" + str(value).removeprefix("v")
    if version not in CHART_VERSIONS:
        raise ValueError(f"{value!r} has no vendored IAM policy and chart version; choose one of "
                         f"{', '.join(CHART_VERSIONS)} (see stacks/cluster/load_balancing/policies/SOURCE.md)")
    return version


@allows('a JSON mapping of EKS add-on to version, e.g. {"coredns": "v1.12.1-eksbuild.2"}')
def addon_versions(value: Any) -> dict[str, str]:
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


@allows('an AMI alias like al2023@v20260903')
def ami_alias(value: Any) -> str:
    match = AMI_ALIAS.fullmatch(str(value))
    if not match:
        raise ValueError(f"{value!r} is not an AMI alias like al2023@v20260903")
    if match["family"] not in AMI_FAMILIES:
        raise ValueError(f"unknown AMI family {match['family']!r}; choose one of {', '.join(AMI_FAMILIES)}")
    return str(value)


@allows("one or more of " + ", ".join(CAPACITY_TYPES))
def capacity_types(value: Any) -> tuple[str, ...]:
    types = items(value)
    if not types:
        raise ValueError("must name at least one capacity type")
    for item in types:
        choice(*CAPACITY_TYPES)(item)
    return tuple(dict.fromkeys(types))


@allows('a duration like 30s, 5m, 720h, or Never')
def duration(value: Any) -> str:
    text = str(value)
    if text == "Never" or (text and DURATION.fullmatch(text)):
        return text
    raise ValueError(f"{value!r} is not a duration like 30s, 5m, 720h, or Never")


@allows('a duration longer than 0 like 720h, or Never')
def lifetime(value: Any) -> str:
    text = duration(value)
    if text != "Never" and not any(int(number) for number in re.findall(r"[0-9]+", text)):
        raise ValueError(f"{value!r} would end every node as soon as it starts; use a duration above 0 or Never")
    return text


@allows('a node count or a percentage like 10%')
def budget(value: Any) -> str:
    text = str(value)
    if re.fullmatch(r"(100|[1-9]?[0-9])%|[0-9]+", text):
        return text
    raise ValueError(f"{value!r} is not a node count or a percentage like 10%")


@allows("a git branch name (letters, digits, '.', '_', '-', '/')")
def branch(value: Any) -> str:
    """git check-ref-format's rules for the characters BRANCH allows: no '..' or '//', no
    component starting with '.' or ending in '.lock', not starting with '-' or ending in '/' or '.'."""
    text = matching(BRANCH, "a git branch name")(value)
    parts = text.split("/")
    if ".." in text or text.startswith("-") or text.endswith((".", "/")) or \
            any(not part or part.startswith(".") or part.endswith(".lock") for part in parts):
        raise ValueError(f"{value!r} is not a valid git branch name (git check-ref-format)")
    return text


@allows('true or false')
def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{value!r} is not allowed; expected true or false")


@allows('USD per hour, more than 0 and less than 1000')
def price(value: Any) -> float:
    if isinstance(value, bool) or not (isinstance(value, (int, float))
                                       or re.fullmatch(r"[0-9]+(\.[0-9]+)?", str(value))):
        raise ValueError(f"{value!r} is not a price in USD per hour like 0.7582")
    price = float(value)
    if not 0 < price < 1000:
        raise ValueError(f"{price} is out of range; allowed more than 0 and less than 1000")
    return price
