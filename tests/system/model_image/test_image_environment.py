"""Our Dockerfiles' own pip steps, run on their base images' package sets: `pip check` must pass.

docker cannot build here, so the base image's Python packages are rebuilt from metadata-only
stand-ins (image_environment.py says how, and what that cannot see) from the record in
model_image/base_image/dlc-2.31.1.toml, and the pip commands are read from the Dockerfiles' RUN
lines, so a change to a Dockerfile is what gets tested. Offline: pip never sees an index.
"""
from __future__ import annotations

import tomllib

import pytest

from tests.support.image_environment import BaseImage, ImageEnvironment, dev_venv_packages, pip_commands
from tests.support.sd21_testlib import MODEL_IMAGE

DLC_RECORD = MODEL_IMAGE / "base_image" / "dlc-2.31.1.toml"


def report(results) -> str:
    return "\n".join(f"$ pip {' '.join(argv)}\n{r.stdout}{r.stderr}" for argv, r in results)


@pytest.fixture(scope="module")
def dlc_base(tmp_path_factory) -> ImageEnvironment:
    """The recorded DLC base, installed once; each test gets its own copy (dlc_environment)."""
    base = BaseImage.load(DLC_RECORD)
    environment = ImageEnvironment(tmp_path_factory.mktemp("dlc-base"))
    environment.offer(dev_venv_packages())
    environment.offer(base.pinned + base.standins)
    installed = environment.pip(["install", *base.install_args()])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return environment


@pytest.fixture
def dlc_environment(dlc_base, tmp_path) -> ImageEnvironment:
    return dlc_base.copy_to(tmp_path / "dlc")


def test_the_recorded_dlc_base_is_itself_consistent(dlc_environment):
    check = dlc_environment.pip(["check"])
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_model_image_pip_steps_pass_pip_check_on_the_dlc_base(dlc_environment):
    environment = dlc_environment
    results = environment.run_dockerfile_pip_steps(MODEL_IMAGE / "Dockerfile")
    assert [argv for argv, _ in results if argv == ["check"]], report(results)
    assert all(r.returncode == 0 for _, r in results), report(results)


def test_without_the_uninstall_pip_check_sees_nxd_inference_pin_transformers(dlc_environment):
    """The harness is not vacuous: NxD Inference 0.10 pins transformers==4.57.*, ours is 5.x."""
    environment = dlc_environment
    for argv in pip_commands(MODEL_IMAGE / "Dockerfile"):
        if argv[:1] == ["install"] and "-r" in argv:
            assert environment.pip(argv, cwd=MODEL_IMAGE).returncode == 0
    check = environment.pip(["check"])
    assert check.returncode != 0
    assert "neuronx-distributed-inference" in check.stdout and "transformers" in check.stdout


def test_the_gateway_image_pip_steps_pass_pip_check_on_a_bare_python(tmp_path):
    environment = ImageEnvironment(tmp_path)  # python:3.12-slim-bookworm: nothing but pip
    environment.offer(dev_venv_packages())
    results = environment.run_dockerfile_pip_steps(MODEL_IMAGE / "Dockerfile.gateway")
    assert [argv for argv, _ in results if argv == ["check"]], report(results)
    assert all(r.returncode == 0 for _, r in results), report(results)


@pytest.mark.parametrize("dockerfile, requirements", [("Dockerfile", "requirements.txt"),
                                                      ("Dockerfile.gateway", "requirements-gateway.txt")])
def test_the_pip_steps_are_read_from_the_run_lines(dockerfile, requirements):
    commands = pip_commands(MODEL_IMAGE / dockerfile)
    assert ["install", "-r", requirements] in commands
    assert commands.index(["check"]) > commands.index(["install", "-r", requirements])


def test_every_recorded_base_pin_says_where_it_was_seen():
    record = tomllib.loads(DLC_RECORD.read_text())
    for package in record["package"]:
        assert package["evidence"].strip() and package["requires_dist_evidence"].strip(), package["name"]
    dlc_pins = [p for p in record["package"] if p["evidence"].startswith("DLC:")]
    assert {p["name"] for p in dlc_pins} >= {"neuronx-cc", "torch-neuronx", "neuronx-distributed",
                                             "neuronx-distributed-inference"}
