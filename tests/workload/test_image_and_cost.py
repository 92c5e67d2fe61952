"""The workload agrees with the image it runs, and the README's cost figures are derived."""
import re
import subprocess
import sys

import pytest

from app import default_context
from stacks.workload.serving.spec import IMAGE_USER, SERVE_PORT
from stacks.settings import Settings, SettingsError
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "model_image" / "Dockerfile").read_text()


def test_neuron_sdk_setting_is_the_base_image_sdk():
    base = re.search(r"^FROM \S+-sdk(\d+\.\d+\.\d+)-", DOCKERFILE, re.M)
    assert base and base.group(1) == Settings.from_context(default_context()).neuron_sdk


def test_pods_run_as_the_image_user_on_the_image_port():
    assert re.search(r"^USER (\d+)$", DOCKERFILE, re.M).group(1) == str(IMAGE_USER)
    assert f"SD21_PORT={SERVE_PORT}" in DOCKERFILE


def test_a_minimum_of_zero_replicas_needs_cold_starts_accepted():
    with pytest.raises(SettingsError, match="'minReplicas'.*acceptColdStarts"):
        Settings.from_context({**default_context(), "minReplicas": 0})
    settings = Settings.from_context({**default_context(), "minReplicas": "0", "acceptColdStarts": "true"})
    assert settings.scales_to_zero and settings.accept_cold_starts is True
    assert not Settings.from_context(default_context()).scales_to_zero
    with pytest.raises(SettingsError, match="'minReplicas'"):
        Settings.from_context({**default_context(), "minReplicas": 5, "maxReplicas": 2})
    with pytest.raises(SettingsError, match="'acceptColdStarts'.*true or false"):
        Settings.from_context({**default_context(), "acceptColdStarts": "yes"})
    with pytest.raises(SettingsError, match="'scaleToZeroAfterSeconds'.*300 to 86400"):
        Settings.from_context({**default_context(), "scaleToZeroAfterSeconds": 60})


def test_idle_cost_at_zero_replicas_is_zero_for_inf2():
    from tools.cost import cost_lines

    settings = Settings.from_context({**default_context(), "minReplicas": 0, "acceptColdStarts": True})
    assert "idle cost with minReplicas=0: $0.000/h, $0/month" in "\n".join(cost_lines(settings))


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
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- cost:begin -->\n```\n(.*?)```\n<!-- cost:end -->", readme, re.S).group(1)
    assert block == result.stdout
    assert "$0.353" in result.stdout  # 0.758 $/h / (0.596 images/s * 3600 s/h) * 1000


def test_image_declares_the_sdk_of_its_base_and_compile_enforces_it(monkeypatch, capsys):
    base = re.search(r"^FROM \S+-sdk(\d+\.\d+\.\d+)-", DOCKERFILE, re.M).group(1)
    assert re.search(r"SD21_IMAGE_NEURON_SDK=(\S+)", DOCKERFILE).group(1) == base

    from sd21 import compile as compile_entry

    monkeypatch.setenv("SD21_IMAGE_NEURON_SDK", "2.30.0")
    code = compile_entry.main(["--backend", "neuron", "--bucket", "some-bucket", "--neuron-sdk", base])
    assert code != 0 and "carries Neuron SDK 2.30.0" in capsys.readouterr().err


def test_cost_names_its_source_and_prices_spot_when_given():
    from tools.cost import cost_lines

    default = "\n".join(cost_lines(Settings.from_context(default_context())))
    assert "0.596 images/s at 50 steps (the Neuron 2.21.0 benchmark row; 2.18.0 gave 0.604)" in default
    assert "(estimate" in default and "spot: set inf2XlargeSpotHourlyUsd" in default
    spot = "\n".join(cost_lines(Settings.from_context({**default_context(), "inf2XlargeSpotHourlyUsd": "0.3"})))
    # $0.3/h over 0.596 images/s: 1000 images take 1678 s, i.e. $0.140.
    assert "$ per 1000 images at full load, spot: $0.140 at 50 steps" in spot
    with pytest.raises(SettingsError, match="inf2XlargeSpotHourlyUsd"):
        Settings.from_context({**default_context(), "inf2XlargeSpotHourlyUsd": "-1"})
