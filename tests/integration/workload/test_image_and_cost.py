"""The workload agrees with the image it runs, and the cost figures in docs/operating.md are derived."""
import re
import subprocess
import sys

import pytest

from app import default_context
from sd21.contract import CompileEnv, ServerEnv
from stacks.workload.serving.spec import IMAGE_USER, SERVE_PORT
from stacks.settings import Settings, SettingsError
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "model_image" / "Dockerfile").read_text()


def test_neuron_sdk_setting_is_the_base_image_sdk():
    base = re.search(r"^FROM \S+-sdk(\d+\.\d+\.\d+)-", DOCKERFILE, re.M)
    assert base and base.group(1) == Settings.from_context(default_context()).model.neuron_sdk


def test_pods_run_as_the_image_user_on_the_image_port():
    assert re.search(r"^USER (\d+)$", DOCKERFILE, re.M).group(1) == str(IMAGE_USER)
    assert f"{ServerEnv.var('port').name}={SERVE_PORT}" in DOCKERFILE


def test_a_minimum_of_zero_replicas_needs_cold_starts_accepted():
    with pytest.raises(SettingsError, match="'minReplicas'.*acceptColdStarts"):
        Settings.from_context({**default_context(), "minReplicas": 0})
    settings = Settings.from_context({**default_context(), "minReplicas": "0", "acceptColdStarts": "true"})
    assert settings.endpoint.scales_to_zero and settings.endpoint.accept_cold_starts is True
    assert not Settings.from_context(default_context()).endpoint.scales_to_zero
    with pytest.raises(SettingsError, match="'minReplicas'"):
        Settings.from_context({**default_context(), "minReplicas": 5, "maxReplicas": 2})
    with pytest.raises(SettingsError, match="'acceptColdStarts'.*true or false"):
        Settings.from_context({**default_context(), "acceptColdStarts": "yes"})
    with pytest.raises(SettingsError, match="'scaleToZeroAfterSeconds'.*300 to 86400"):
        Settings.from_context({**default_context(), "scaleToZeroAfterSeconds": 60})


def test_internet_facing_needs_allow_list_and_certificate():
    with pytest.raises(SettingsError, match="'ingressAllowedCidrs'"):
        Settings.from_context({**default_context(), "ingressScheme": "internet-facing"})
    with pytest.raises(SettingsError, match="'certificateArn'"):
        Settings.from_context({**default_context(), "ingressScheme": "internet-facing",
                               "ingressAllowedCidrs": "203.0.113.0/24"})


def test_readme_cost_block_is_the_cost_command_output():
    result = subprocess.run([sys.executable, "-m", "tools.cost"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    readme = (ROOT / "docs" / "operating.md").read_text()
    block = re.search(r"<!-- cost:begin -->\n```\n(.*?)```\n<!-- cost:end -->", readme, re.S).group(1)
    assert block == result.stdout
    assert "$0.353" in result.stdout  # 0.758 $/h / (0.596 images/s * 3600 s/h) * 1000


def test_image_declares_the_sdk_of_its_base_and_compile_enforces_it(monkeypatch, capsys):
    base = re.search(r"^FROM \S+-sdk(\d+\.\d+\.\d+)-", DOCKERFILE, re.M).group(1)
    image_sdk = CompileEnv.var("image_neuron_sdk").name
    assert re.search(rf"{image_sdk}=(\S+)", DOCKERFILE).group(1) == base

    from sd21 import compile as compile_entry

    monkeypatch.setenv(image_sdk, "2.30.0")
    code = compile_entry.main(["--backend", "neuron", "--bucket", "some-bucket", "--neuron-sdk", base])
    assert code != 0 and "carries Neuron SDK 2.30.0" in capsys.readouterr().err


def test_the_spot_price_is_optional_and_positive():
    """The figures themselves: tests/unit/tools/test_cost.py."""
    assert Settings.from_context(default_context()).endpoint.inf2_xlarge_spot_hourly_usd is None
    assert Settings.from_context({**default_context(), "inf2XlargeSpotHourlyUsd": "0.3"}).endpoint.inf2_xlarge_spot_hourly_usd == 0.3
    with pytest.raises(SettingsError, match="inf2XlargeSpotHourlyUsd"):
        Settings.from_context({**default_context(), "inf2XlargeSpotHourlyUsd": "-1"})
