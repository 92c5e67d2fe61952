"""Invalid chart settings stop the app with a one-line message naming the setting."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import app as cdk_app
from stacks.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("key, value, message", [
    ("nodeCapacityTypes", ["on-demand", "reserved"], "'reserved' is not allowed"),
    ("nodeCapacityTypes", [], "at least one capacity type"),
    ("nodePoolCpuLimit", -4, "out of range"),
    ("nodePoolMemoryGibLimit", -1, "out of range"),
    ("nodePoolNeuronLimit", "-1", "out of range"),
    ("nodeAmiAlias", "ubuntu@latest", "unknown AMI family 'ubuntu'"),
    ("nodeAmiAlias", "al2023", "not an AMI alias"),
    ("nodeRootVolumeGib", 50, "out of range"),
    ("nodeConsolidateAfter", "soon", "not a duration"),
    ("nodeDisruptionBudget", "150%", "node count or a percentage"),
    ("neuronDevicePluginVersion", "latest", "Neuron release tag"),
])
def test_invalid_chart_setting_is_named(key, value, message):
    with pytest.raises(SettingsError, match=message) as raised:
        Settings.from_context({**cdk_app.default_context(), key: value})
    assert raised.value.setting == key
    assert f"Invalid setting '{key}'" in str(raised.value)


def test_app_exits_2_with_one_line_message():
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"nodeCapacityTypes": "reserved"}),
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "error: Invalid setting 'nodeCapacityTypes': 'reserved' is not allowed" in result.stderr
    assert "Traceback" not in result.stderr
