"""The one typed, validated settings object of the app.

Values come from the `context` of cdk.json and can be overridden on the command
line with `-c key=value`; the keys stay flat (camelCase of each field's name). Every
value is parsed and checked here, once, into frozen groups (stacks/settings/groups.py);
an invalid one raises SettingsError naming the setting and what is allowed, and app.py
turns that into a one-line message and a non-zero exit (no traceback). Stacks read the
groups; each unit gets keyword-only props of exactly what it reads, never Settings.
"""
from __future__ import annotations

import json
import re
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

from stacks.settings.groups import (GROUPS, AlarmSettings, ClusterSettings, EndpointSettings, ModelSettings,
                                    NetworkSettings, NodePoolSettings, ReleaseSettings, SettingsError,
                                    StorageSettings, VersionSettings, covers_everything, workload_nodes)
from stacks.settings.parsers import KARPENTER_MINOR, KEDA_MINIMUM, SUPPORTED_KUBERNETES, camel

__all__ = ["Settings", "SettingsError", "default_context", "key_value_pairs", "parse_setting", "allowed", "doc",
           "camel", "setting_fields", "PARSERS", "GROUPS", "covers_everything", "workload_nodes", "KARPENTER_MINOR",
           "SUPPORTED_KUBERNETES"]

# Settings an earlier version had: a context that still sets one gets told why it went.
RETIRED = {
    "prometheusAdapterChartVersion": "KEDA scales the endpoint in both modes, prometheus-adapter is not installed",
}

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


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


def setting_fields() -> Iterator[tuple[str, Field]]:
    """(group attribute, field) of every setting, in the reference's order."""
    for group, cls, _ in GROUPS:
        for item in fields(cls):
            yield group, item


_FIELDS = {item.name: item for _, item in setting_fields()}
# snake_case name -> its parser (what the property tests drive).
PARSERS = {name: item.metadata["parse"] for name, item in _FIELDS.items()}


def parse_setting(key: str, value: Any) -> Any:
    """One setting (camelCase key) from its raw context value, by itself."""
    try:
        return _FIELDS[_snake(key)].metadata["parse"](value)
    except SettingsError:
        raise
    except (ValueError, TypeError) as err:
        raise SettingsError(key, str(err)) from None
    except RecursionError:
        raise SettingsError(key, "is nested too deeply to be a setting") from None


def allowed(name: str) -> str:
    """What the setting `name` (snake_case) accepts, in words."""
    return _FIELDS[name].metadata["parse"].allowed


def doc(name: str) -> str:
    """What the setting `name` (snake_case) does, in words."""
    return _FIELDS[name].metadata["doc"]


def _snake(camel_key: str) -> str:
    return re.sub(r"[A-Z]", lambda upper: "_" + upper.group(0).lower(), camel_key)


# Keys the CDK and its CLI put in the context: feature flags (@aws-cdk/...), aws:cdk:*,
# lookups (availability-zones:..., all with ':'), and notices the CLI acknowledges.
_CDK_KEYS = {"acknowledged-issue-numbers"}


def _cdk_key(key: str) -> bool:
    return key in _CDK_KEYS or any(c in key for c in ":@/")


@dataclass(frozen=True)
class Settings:
    network: NetworkSettings
    cluster: ClusterSettings
    node_pool: NodePoolSettings
    model: ModelSettings
    endpoint: EndpointSettings
    alarms: AlarmSettings
    storage: StorageSettings
    release: ReleaseSettings
    versions: VersionSettings

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "Settings":
        """Parse and validate settings from a CDK context mapping (camelCase keys)."""
        known = {camel(name) for name in _FIELDS}
        unknown = sorted(key for key in set(context) - known
                         if not _cdk_key(key) or key.rsplit(":", 1)[-1] in known)
        retired = [key for key in unknown if key in RETIRED]
        if retired:
            raise SettingsError(retired[0], f"is no longer used: {RETIRED[retired[0]]}; remove it from the context")
        if unknown:
            suggestion = camel(unknown[0].rsplit(":", 1)[-1].replace("-", "_"))
            hint = f"; did you mean '{suggestion}'?" if suggestion in known else " (typo?)"
            raise SettingsError(unknown[0], "is not a known setting" + hint)
        groups = {}
        for group, group_cls, _ in GROUPS:
            values = {}
            for item in fields(group_cls):
                key = camel(item.name)
                if key not in context or context[key] is None:
                    raise SettingsError(key, "is missing from the cdk.json context")
                values[item.name] = parse_setting(key, context[key])
            groups[group] = group_cls(**values)
        settings = cls(**groups)
        settings._check_relations()
        return settings

    def _check_relations(self) -> None:
        """Each group's own checks, in the reference's order, then those across groups."""
        for group, _, _ in GROUPS:
            check = getattr(getattr(self, group), "check", None)
            if check:
                check()
        if self.alarms.latency_slo_seconds >= self.endpoint.request_timeout_seconds:
            raise SettingsError("latencySloSeconds", f"must be below requestTimeoutSeconds "
                                f"({self.endpoint.request_timeout_seconds}): no request takes longer, so the alarm "
                                "could never fire")
        self._check_node_pool_holds_max_replicas()
        self._check_keda_supports_kubernetes()

    def _check_node_pool_holds_max_replicas(self) -> None:
        """The inf2 NodePool's limits count whole nodes: they must admit maxReplicas serving nodes."""
        serve_node = workload_nodes()[1]
        pool, replicas = self.node_pool, self.endpoint.max_replicas
        for what, limit, each in (("nodePoolNeuronLimit", pool.node_pool_neuron_limit, serve_node.devices),
                                  ("nodePoolCpuLimit", pool.node_pool_cpu_limit, serve_node.vcpu),
                                  ("nodePoolMemoryGibLimit", pool.node_pool_memory_gib_limit, serve_node.memory_gib)):
            if replicas * each > limit:
                raise SettingsError("maxReplicas", f"{replicas} replicas need {replicas} {serve_node.name} nodes "
                                    f"({replicas * each} of {what}), but {what} is {limit}")

    def _check_keda_supports_kubernetes(self) -> None:
        version, keda = self.cluster.kubernetes_version, self.endpoint.keda_chart_version
        minimum = KEDA_MINIMUM.get(version)
        if minimum and tuple(map(int, keda.split(".")[:2])) < minimum:
            raise SettingsError("kedaChartVersion", f"KEDA {keda} does not support Kubernetes {version}; use "
                                f"{'.'.join(map(str, minimum))}.0 or later")
