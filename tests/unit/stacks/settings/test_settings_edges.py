"""Settings that passed one by one and then broke: values a careless regex, int() or float()
let through, a JSON list nested too deep, namespaced keys, and pairs of values that together
make a feature that can never act. Then every parser under generated input: one line of
error or a value of the documented form, never a traceback."""
from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from stacks.settings import default_context
from stacks.settings import PARSERS, Settings, SettingsError, camel, parse_setting


def settings_with(**overrides) -> Settings:
    return Settings.from_context({**default_context(), **overrides})


def refused(key: str, **overrides) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        settings_with(**overrides)
    assert caught.value.setting == key, caught.value
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize("key, value", [
    ("clusterName", "sd21\n"),             # `$` matches before a trailing newline
    ("modelName", "sd21-base\n"),
    ("pipelineBranch", "main\n"),
    ("imageTag", "abc\n"),
    ("kedaChartVersion", "2.20.2\n"),
    ("nodeAmiAlias", "al2023@v20260903\n"),
    ("alarmEmail", "ops@example.com\n"),
])
def test_a_trailing_newline_is_refused_everywhere(key, value):
    refused(key, **{key: value})


@pytest.mark.parametrize("value", ["١٦", "+4", "1_6", " 16", "16 ", "0x10", "16.0", "１６"])
def test_a_number_is_ascii_digits_and_nothing_else(value):
    refused("queueSize", queueSize=value)


@pytest.mark.parametrize("value", ["1_0", "١", "nan", "inf", "1e2", " 1.0"])
def test_a_price_is_a_plain_decimal(value):
    refused("inf2XlargeHourlyUsd", inf2XlargeHourlyUsd=value)


def test_a_list_setting_nested_too_deep_is_one_line_not_a_recursion_error():
    error = refused("publicAccessCidrs", endpointAccess="public", publicAccessCidrs="[" * 3000 + "]" * 3000)
    assert "too deeply" in str(error)
    nested: list = []
    for _ in range(3000):
        nested = [nested]
    refused("ingressAllowedCidrs", ingressAllowedCidrs=nested)


def test_networks_that_together_are_the_whole_internet_are_refused():
    refused("publicAccessCidrs", endpointAccess="public", publicAccessCidrs="0.0.0.0/1,128.0.0.0/1")
    refused("publicAccessCidrs", endpointAccess="public",
            publicAccessCidrs="0.0.0.0/2,64.0.0.0/2,128.0.0.0/2,192.0.0.0/2")
    assert settings_with(endpointAccess="public", publicAccessCidrs="0.0.0.0/1").cluster.public_access_cidrs == ("0.0.0.0/1",)


@pytest.mark.parametrize("key, value", [
    ("albControllerVersion", "vvv3.2.2"),
    ("karpenterVersion", "1.14.01"),
    ("kedaChartVersion", "02.20.2"),
    ("neuronSdk", "2.31.01"),
    ("neuronDevicePluginVersion", "2.32.00.0"),
])
def test_a_version_is_written_as_its_release_is(key, value):
    refused(key, **{key: value})


@pytest.mark.parametrize("value", ["a..b", "-main", "main/", "main.", "a//b", ".hidden", "rel/.x", "x.lock"])
def test_a_branch_name_follows_gits_rules(value):
    refused("pipelineBranch", pipelineBranch=value)


def test_a_setting_under_a_namespace_is_named_not_ignored():
    error = refused("sd21:queueSize", **{"sd21:queueSize": 4})
    assert "did you mean 'queueSize'" in str(error)


def test_a_node_that_expires_at_once_is_refused():
    refused("nodeExpireAfter", nodeExpireAfter="0h")
    refused("nodeExpireAfter", nodeExpireAfter="0h0m0s")
    assert settings_with(nodeExpireAfter="Never").node_pool.node_expire_after == "Never"


def test_scale_up_by_load_must_be_reachable_by_one_replica():
    defaults = settings_with()
    error = refused("targetPendingPerReplica", queueSize=4, targetPendingPerReplica=6)
    assert "queueSize + 1 = 5" in str(error)
    assert settings_with(queueSize=4, targetPendingPerReplica=5).endpoint.target_pending_per_replica == 5
    assert defaults.endpoint.target_pending_per_replica <= defaults.endpoint.queue_size + 1


def test_a_result_link_may_not_outlive_the_result():
    refused("jobUrlExpiresSeconds", jobResultDays=1, jobUrlExpiresSeconds=86401)
    assert settings_with(jobResultDays=1, jobUrlExpiresSeconds=86400).endpoint.job_url_expires_seconds == 86400


def test_a_latency_objective_the_timeout_cuts_off_is_refused():
    refused("latencySloSeconds", requestTimeoutSeconds=60, latencySloSeconds=60)
    assert settings_with(requestTimeoutSeconds=60, latencySloSeconds=59).alarms.latency_slo_seconds == 59


# --- every parser under generated input ---------------------------------------------

TRICKY = st.sampled_from(["", " ", "\n", "\t", "\x00", "١", "٣", "１", "+", "_", "-", "0", "00", "$", "^",
                          "..", "//", "[", "]", "{", "}", ",", ":", "@", "v", "\u00a0", "\u2028", "é"])
TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(TRICKY, st.text(alphabet=string.printable, max_size=6)), max_size=8).map("".join),
    st.integers(-5, 2000).map(str).flatmap(lambda n: st.sampled_from([n, n + "\n", "+" + n, n + " ", n.replace("1", "١")])),
    st.integers(1, 4000).map(lambda depth: "[" * depth + "]" * depth),
)
SETTINGS = sorted(PARSERS)


def documented_shape(name: str, parsed) -> bool:
    """What the settings table (docs/settings.md) promises of an accepted value: text settings are
    printable ASCII without whitespace at either end, numbers are numbers."""
    values = parsed if isinstance(parsed, (tuple, list)) else \
        list(parsed.values()) if isinstance(parsed, dict) else [parsed]
    for value in values:
        if isinstance(value, str) and not (value.isascii() and value.isprintable() and value == value.strip()):
            return False
    return True


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(SETTINGS), value=TEXT)
def test_any_text_given_to_any_setting_is_a_one_line_refusal_or_a_documented_value(name, value):
    key = camel(name)
    try:
        parsed = parse_setting(key, value)
    except SettingsError as error:
        assert error.setting == key and "\n" not in str(error)
        return
    assert documented_shape(name, parsed), (key, value, parsed)


@hypothesis_settings(max_examples=40, deadline=None)
@given(value=st.integers(-10**6, 10**6).map(str) | TEXT)
def test_every_number_setting_accepts_exactly_ascii_digits_in_its_range(value):
    for name, parse in PARSERS.items():
        match = re.fullmatch(r"(\d+) to (\d+)", parse.allowed)
        if not match:
            continue
        low, high = map(int, match.groups())
        expected = re.fullmatch(r"-?[0-9]+", value) is not None and low <= int(value) <= high
        try:
            parsed = parse_setting(camel(name), value)
        except SettingsError:
            assert not expected, (name, value)
        else:
            assert expected and parsed == int(value), (name, value)


def test_a_context_read_from_cdk_json_text_keeps_its_meaning():
    """The same checks apply to values that come as JSON (cdk.json), not only as -c strings."""
    context = json.loads(json.dumps(default_context()))
    assert Settings.from_context(context) == settings_with()


def test_the_gateways_hold_no_more_than_the_endpoint_admits_at_once():
    """Both gateway pods hold up to coldStartHoldRequests each; maxReplicas replicas admit
    queueSize + 1 each. Only at scale to zero, where the gateways exist."""
    zero = {"minReplicas": 0, "acceptColdStarts": True, "maxReplicas": 4, "queueSize": 4}
    error = refused("coldStartHoldRequests", **zero, coldStartHoldRequests=11)
    assert "at most 10" in str(error) and "22 in all" in str(error)
    assert settings_with(**zero, coldStartHoldRequests=10).endpoint.cold_start_hold_requests == 10
    assert settings_with(minReplicas=1, maxReplicas=4, queueSize=4, coldStartHoldRequests=11)
