"""Settings: defaults parse; each kind of invalid value fails with a message naming the setting."""
import json
import os
import re
import subprocess
import sys

import pytest

import app as cdk_app
from stacks.settings import Settings, SettingsError, parse_setting as parse_one

from tests.conftest import ROOT


def settings_with(**overrides) -> Settings:
    return Settings.from_context({**cdk_app.default_context(), **overrides})


def test_defaults_are_valid():
    settings = settings_with()
    assert settings.cluster.kubernetes_version == "1.35"
    assert settings.network.az_count >= 2
    assert settings.cluster.kube_scheduler_image.startswith("registry.k8s.io/kube-scheduler:v1.35.")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("kubernetesVersion", "1.20", "'kubernetesVersion'"),
        ("azCount", 0, "'azCount'"),
        ("azCount", "three", "'azCount'"),
        ("publicAccessCidrs", "10.0.0.0/33", "'publicAccessCidrs'"),
        ("vpcCidr", "10.0.0.1/16", "'vpcCidr'"),
        ("clusterName", "", "'clusterName'"),
        ("karpenterVersion", "1.13.0", "'karpenterVersion'"),
        ("albControllerVersion", "v9.9.9", "'albControllerVersion'"),
        ("addonVersions", '{"kube-proxy": "v1.34.0-eksbuild.1"}', "'addonVersions'"),
        ("adminPrincipalArn", "arn:aws:iam::123:role/x", "'adminPrincipalArn'"),
        ("natGateways", 3, "'natGateways'"),
        ("imageTag", "bad tag", "'imageTag'"),
        ("unknownSetting", "x", "'unknownSetting'"),
        ("queue-size", "1", "'queue-size': is not a known setting; did you mean 'queueSize'?"),
        ("addonVersions", "null", "'addonVersions'"),
        ("addonVersions", [], "'addonVersions'"),
        ("addonVersions", "not json", "'addonVersions'"),
        ("addonVersions", {"coredns": 1}, "'addonVersions'"),
        ("nodePoolCpuLimit", 16, "'nodePoolCpuLimit': 16 is below the 32 of the inf2.8xlarge"),
        ("nodePoolMemoryGibLimit", 64, "'nodePoolMemoryGibLimit': 64 is below the 128 of the inf2.8xlarge"),
        ("maxReplicas", 9, "'maxReplicas': 9 replicas need 9 inf2.xlarge nodes"),
        ("prometheusAdapterChartVersion", "5.1.0",
         "'prometheusAdapterChartVersion': is no longer used: KEDA scales the endpoint in both modes"),
    ],
)
def test_invalid_value_names_the_setting(key, value, expected):
    with pytest.raises(SettingsError) as err:
        settings_with(**{key: value})
    assert expected in str(err.value)


def test_public_endpoint_needs_an_allow_list():
    with pytest.raises(SettingsError, match="publicAccessCidrs"):
        settings_with(endpointAccess="public", publicAccessCidrs=[])
    settings = settings_with(endpointAccess="public", publicAccessCidrs="203.0.113.0/24, 198.51.100.7/32")
    assert settings.cluster.public_access_cidrs == ("203.0.113.0/24", "198.51.100.7/32")


def test_public_endpoint_never_open_to_the_internet():
    with pytest.raises(SettingsError, match="'publicAccessCidrs': must not open the cluster API"):
        settings_with(endpointAccess="public", publicAccessCidrs=["198.51.100.7/32", "0.0.0.0/0"])


def test_keys_the_cdk_itself_adds_are_not_settings():
    settings_with(**{"acknowledged-issue-numbers": [12345], "@aws-cdk/core:newStyleStackSynthesis": True,
                     "aws:cdk:enable-path-metadata": True, "availability-zones:account=1:region=r": ["a"]})


def test_replica_limits_follow_the_node_pool():
    assert settings_with(maxReplicas=20, nodePoolNeuronLimit=21, nodePoolCpuLimit=112,
                         nodePoolMemoryGibLimit=448).endpoint.max_replicas == 20


def test_command_line_strings_are_parsed():
    settings = settings_with(azCount="3", natGateways="3", nodeCapacityTypes="on-demand,spot")
    assert settings.network.az_count == 3 and settings.node_pool.node_capacity_types == ("on-demand", "spot")


@pytest.mark.parametrize(
    "context, setting",
    [
        ({"kubernetesVersion": "1.20"}, "kubernetesVersion"),
        ({"azCount": "0"}, "azCount"),
        ({"endpointAccess": "public", "publicAccessCidrs": "300.1.1.1/8"}, "publicAccessCidrs"),
        ({"clusterName": ""}, "clusterName"),
        ({"addonVersions": "null"}, "addonVersions"),
        ({"queue-size": "1"}, "queue-size"),
    ],
)
def test_synth_fails_with_a_clear_message(context, setting):
    """As `cdk synth -c key=value` does: the CLI hands -c values to the app in CDK_CONTEXT_JSON."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": "/nonexistent-never-written"}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"Invalid setting '{setting}'" in result.stderr
    assert "Traceback" not in result.stderr


# --- the settings reference (docs/settings.md): the documented edges are the enforced ones ------

def _readme_reference() -> dict[str, tuple[str, str]]:
    text = (ROOT / "docs" / "settings.md").read_text()
    block = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert block, "docs/settings.md lacks the settings reference (python -m tools.settings_reference)"
    rows = {}
    for line in block.group(1).splitlines():
        if line.startswith("| `"):  # a setting's row (the groups' headings and table heads are not)
            key, default, accepted, _ = (cell.strip() for cell in line.strip("|").split(" | "))
            rows[key.strip("`")] = (default, accepted)
    return rows


def test_readme_settings_reference_is_the_command_output():
    result = subprocess.run([sys.executable, "-m", "tools.settings_reference"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    block = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", (ROOT / "docs" / "settings.md").read_text(), re.S)
    assert block.group(1) == result.stdout


def test_every_numeric_setting_accepts_exactly_the_range_the_readme_states():
    ranges = {key: tuple(map(int, match.groups())) for key, (_, accepted) in _readme_reference().items()
              if (match := re.fullmatch(r"(\d+) to (\d+)", accepted))}
    assert len(ranges) >= 30 and {"queueSize", "minReplicas", "hangFactor", "systemNodeMaxSize"} <= set(ranges)
    for key, (low, high) in ranges.items():
        for value in (low, high):
            assert parse_one(key, value) == value, key
        for value in (low - 1, high + 1):
            with pytest.raises(SettingsError) as refused:
                parse_one(key, value)
            assert f"'{key}'" in str(refused.value) and f"allowed {low} to {high}" in str(refused.value)


def test_every_setting_is_in_the_reference_with_its_default():
    from app import default_context

    rows = _readme_reference()
    context = default_context()
    assert set(rows) == {key for key in context if not key.startswith("@") and ":" not in key}
    assert rows["queueSize"][0] == f"`{context['queueSize']}`" and rows["alarmEmail"][0] == "(empty)"


# --- relations and parsers at their edges (mutation testing found these untested) -------

def test_replicas_must_fit_the_node_pool_by_every_resource():
    """inf2.xlarge: 4 vCPU, 16 GiB, 1 Neuron device (the EC2 instance type's published size)."""
    roomy = {"nodePoolNeuronLimit": 100, "nodePoolMemoryGibLimit": 10000}
    assert settings_with(maxReplicas=16, nodePoolCpuLimit=64, **roomy).endpoint.max_replicas == 16  # 16 x 4 = 64
    with pytest.raises(SettingsError) as refused:
        settings_with(maxReplicas=17, nodePoolCpuLimit=64, **roomy)
    assert ("'maxReplicas': 17 replicas need 17 inf2.xlarge nodes (68 of nodePoolCpuLimit), "
            "but nodePoolCpuLimit is 64") in str(refused.value)


def test_min_replicas_may_equal_max_replicas():
    settings = settings_with(minReplicas=4, maxReplicas=4)
    assert (settings.endpoint.min_replicas, settings.endpoint.max_replicas) == (4, 4)
    with pytest.raises(SettingsError, match=r"'minReplicas': must be at most maxReplicas \(3\)"):
        settings_with(minReplicas=4, maxReplicas=3)


def test_gp3_throughput_is_at_most_a_quarter_of_the_iops():
    assert settings_with(nodeRootVolumeIops=3000, nodeRootVolumeThroughputMibps=750).node_pool.node_root_volume_iops == 3000
    with pytest.raises(SettingsError) as refused:
        settings_with(nodeRootVolumeIops=3000, nodeRootVolumeThroughputMibps=751)
    assert "3000 IOPS allow 750 MiB/s" in str(refused.value)


@pytest.mark.parametrize("cidr, accepted", [("10.0.0.0/16", True), ("10.0.0.0/20", True),
                                             ("10.0.0.0/15", False), ("10.0.0.0/21", False)])
def test_vpc_cidr_is_a_slash_16_to_20(cidr, accepted):
    if accepted:
        assert settings_with(vpcCidr=cidr).network.vpc_cidr == cidr
    else:
        with pytest.raises(SettingsError, match="'vpcCidr'.*/16 to /20"):
            settings_with(vpcCidr=cidr)


def test_durations_are_karpenter_durations_or_never():
    never = "".join(["Ne", "ver"])  # a string built at run time, as a parsed context value is
    assert settings_with(nodeExpireAfter=never).node_pool.node_expire_after == "Never"
    assert settings_with(nodeExpireAfter="720h").node_pool.node_expire_after == "720h"
    for bad in ("Later", "never", "", "5 m"):
        with pytest.raises(SettingsError, match="'nodeExpireAfter'"):
            settings_with(nodeExpireAfter=bad)


def test_the_system_node_group_desired_size_may_sit_at_either_bound():
    assert settings_with(systemNodeMinSize=2, systemNodeDesiredSize=4, systemNodeMaxSize=4).cluster.system_node_desired_size == 4
    assert settings_with(systemNodeMinSize=2, systemNodeDesiredSize=2, systemNodeMaxSize=4).cluster.system_node_desired_size == 2
    for low, desired, high in ((3, 2, 4), (2, 5, 4)):
        with pytest.raises(SettingsError, match="'systemNodeDesiredSize'"):
            settings_with(systemNodeMinSize=low, systemNodeDesiredSize=desired, systemNodeMaxSize=high)


def test_prices_are_positive_and_below_a_thousand():
    assert settings_with(inf2XlargeHourlyUsd="999.99").endpoint.inf2_xlarge_hourly_usd == 999.99
    for bad, message in (("0", "out of range"), ("1000", "out of range"), ("1500", "out of range"),
                         ("abc", "'abc' is not a price in USD")):
        with pytest.raises(SettingsError) as refused:
            settings_with(inf2XlargeHourlyUsd=bad)
        assert "'inf2XlargeHourlyUsd'" in str(refused.value) and message in str(refused.value)


def test_booleans_are_read_from_text_as_cdk_passes_them():
    yes, no = "".join(["TR", "UE"]), " false "  # built at run time, as -c values are
    assert settings_with(nodeRepair=yes).cluster.node_repair is True
    assert settings_with(nodeRepair=no).cluster.node_repair is False


def test_an_addon_version_must_look_like_an_eks_build():
    assert settings_with(addonVersions='{"coredns": "v1.12.1-eksbuild.2"}').cluster.addon_versions == {
        "coredns": "v1.12.1-eksbuild.2"}
    with pytest.raises(SettingsError, match="coredns version '1.12.1' must look like v1.2.3-eksbuild.1"):
        settings_with(addonVersions='{"coredns": "1.12.1"}')


def test_a_hang_bound_above_the_request_timeout_is_refused_too():
    with pytest.raises(SettingsError, match="'hangMinimumSeconds': must be below requestTimeoutSeconds"):
        settings_with(hangMinimumSeconds=100, requestTimeoutSeconds=60)


def test_of_several_unknown_keys_the_first_is_named_with_its_suggestion():
    with pytest.raises(SettingsError, match="'queue-size': is not a known setting; did you mean 'queueSize'"):
        settings_with(**{"zzzSetting": 1, "queue-size": 2})


def test_a_missing_setting_is_named_not_a_traceback():
    from app import default_context

    context = default_context()
    del context["queueSize"]
    with pytest.raises(SettingsError, match="'queueSize': is missing from the cdk.json context"):
        Settings.from_context(context)


def test_settings_cannot_change_once_read():
    import dataclasses

    settings = settings_with()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.endpoint.queue_size = 99


def test_endpoint_access_rules_hold_for_values_read_at_run_time():
    public, private = "".join(["pub", "lic"]), "".join(["pri", "vate"])
    with pytest.raises(SettingsError, match="'publicAccessCidrs': must list at least one CIDR"):
        settings_with(endpointAccess=public, publicAccessCidrs=[])
    with pytest.raises(SettingsError, match="'publicAccessCidrs': must be empty when endpointAccess is 'private'"):
        settings_with(endpointAccess=private, publicAccessCidrs=["203.0.113.0/24"])


def test_a_node_pool_exactly_the_size_of_the_compile_node_is_enough():
    """The compile Job's inf2.8xlarge: 32 vCPU, 128 GiB (the EC2 instance type's published size)."""
    settings = settings_with(nodePoolCpuLimit=32, nodePoolMemoryGibLimit=128, maxReplicas=2)
    assert (settings.node_pool.node_pool_cpu_limit, settings.node_pool.node_pool_memory_gib_limit) == (32, 128)


def test_a_price_that_is_not_a_number_at_all_is_named():
    with pytest.raises(SettingsError, match=r"'inf2XlargeHourlyUsd': \[1\] is not a price in USD"):
        settings_with(inf2XlargeHourlyUsd=[1])


def test_karpenter_finds_the_cluster_by_its_discovery_tag():
    """Karpenter's getting-started tags subnets and security groups karpenter.sh/discovery=<cluster>."""
    assert settings_with(clusterName="team-a").cluster.discovery_tag == ("karpenter.sh/discovery", "team-a")


def test_kubernetes_1_36_needs_keda_2_21_or_later():
    """keda.sh's Kubernetes compatibility (stacks/external_artifacts.yaml): KEDA 2.20 covers 1.33-1.35."""
    with pytest.raises(SettingsError) as refused:
        settings_with(kubernetesVersion="1.36", kedaChartVersion="2.20.2")
    assert str(refused.value) == ("Invalid setting 'kedaChartVersion': KEDA 2.20.2 does not support Kubernetes 1.36; "
                                  "use 2.21.0 or later")
    assert settings_with(kubernetesVersion="1.36", kedaChartVersion="2.21.0").endpoint.keda_chart_version == "2.21.0"
    assert settings_with(kubernetesVersion="1.36", kedaChartVersion="3.0.0").cluster.kubernetes_version == "1.36"
    assert settings_with(kubernetesVersion="1.35", kedaChartVersion="2.20.2").cluster.kubernetes_version == "1.35"


def test_unknown_registry_answers_are_warnings_unless_the_setting_says_fatal():
    assert settings_with().release.preflight_unknown_is_fatal is False
    assert settings_with(preflightUnknownIsFatal="true").release.preflight_unknown_is_fatal is True
    with pytest.raises(SettingsError, match="'preflightUnknownIsFatal'"):
        settings_with(preflightUnknownIsFatal="sometimes")
