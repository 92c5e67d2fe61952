"""The image definition (docker cannot build here): pinned base, pinned deps, non-root, entrypoints."""
from __future__ import annotations

import re
import tomllib

from tests.support.sd21_testlib import MODEL_IMAGE

BASE = "public.ecr.aws/neuron/pytorch-inference-neuronx:2.9.0-neuronx-py312-sdk2.31.1-ubuntu24.04"
ENTRYPOINTS = {"sd21-compile", "sd21-stage", "sd21-serve", "sd21-benchmark", "sd21-gateway", "sd21-mirror-weights",
               "sd21-cold-start-metrics"}
GATEWAY_BASE = "public.ecr.aws/docker/library/python:3.12-slim-bookworm"


def _requirements(name: str) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in (MODEL_IMAGE / name).read_text().splitlines()]
    return dict(line.split("==") for line in lines if line)


def _instructions(dockerfile: str = "Dockerfile") -> list[tuple[str, str]]:
    text = (MODEL_IMAGE / dockerfile).read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_pinned_neuron_base_image():
    froms = [arg for op, arg in _instructions() if op == "FROM"]
    assert froms == [BASE]


def test_pip_dependencies_are_pinned_and_exclude_torch():
    requirements = [line.split("#")[0].strip() for line in (MODEL_IMAGE / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in requirements if line]
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line) for line in requirements)
    assert not any(line.lower().startswith(("torch==", "torch-neuronx", "neuronx-cc")) for line in requirements)
    runs = " ".join(arg for op, arg in _instructions() if op == "RUN")
    for install in re.findall(r"pip install ([^&;]+)", runs):
        assert "-r requirements.txt" in install or "--no-deps" in install, install


def test_base_image_wrapper_is_dropped_and_dependencies_checked():
    """The base image's ENTRYPOINT (a TorchServe wrapper ending in `tail -f /dev/null`),
    HEALTHCHECK and TEMP are not ours: `docker run <image> sd21-serve` runs our process as PID 1."""
    instructions = _instructions()
    assert ("ENTRYPOINT", "[]") in instructions
    assert ("HEALTHCHECK", "NONE") in instructions
    env = " ".join(arg for op, arg in instructions if op == "ENV")
    assert re.search(r"\bTEMP=/tmp\b", env)
    runs = [arg for op, arg in instructions if op == "RUN"]
    assert all("pip check" in run for run in runs if "pip install" in run)


def test_runs_as_non_root_user():
    users = [arg for op, arg in _instructions() if op == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")


def test_the_entrypoints_and_no_cluster_tools():
    scripts = tomllib.loads((MODEL_IMAGE / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == ENTRYPOINTS
    pyproject = tomllib.loads((MODEL_IMAGE / "pyproject.toml").read_text())
    assert pyproject["project"]["dependencies"] == []
    text = (MODEL_IMAGE / "Dockerfile").read_text().lower()
    assert "pip install --no-deps ." in text
    for tool in ("kubectl", "awscli", "aws-cli", "awscliv2"):
        assert tool not in text
    assert not re.search(r"\baws\s", " ".join(arg for op, arg in _instructions() if op == "RUN").lower())


def test_gateway_image_is_slim_pinned_and_non_root():
    instructions = _instructions("Dockerfile.gateway")
    assert [arg for op, arg in instructions if op == "FROM"] == [GATEWAY_BASE]
    installs = [i.strip() for op, arg in instructions if op == "RUN" for i in re.findall(r"pip install ([^&;]+)", arg)]
    assert installs == ["-r requirements-gateway.txt", "--no-deps ."]
    assert [arg for op, arg in instructions if op == "USER"][-1] == "10001"
    assert [arg for op, arg in instructions if op == "CMD"] == ['["sd21-gateway"]']


def test_gateway_requirements_are_pinned_like_the_model_image():
    gateway, model = _requirements("requirements-gateway.txt"), _requirements("requirements.txt")
    assert gateway and all(re.fullmatch(r"[\w.]+", v) for v in gateway.values())
    # starlette and pydantic come with fastapi in the model image; the rest must be the same versions.
    assert {k: v for k, v in gateway.items() if k in model} == {k: model[k] for k in gateway if k in model}
    assert set(gateway) - set(model) <= {"starlette", "pydantic"}


def test_gateway_imports_nothing_heavy():
    import subprocess
    import sys

    from tests.support.sd21_testlib import subprocess_env

    probe = ("import sys, sd21.gateway; heavy = {'torch', 'diffusers', 'transformers', 'fastapi', 'gradio', "
             "'boto3'} & set(sys.modules); print(sorted(heavy))")
    result = subprocess.run([sys.executable, "-c", probe], env=subprocess_env({}), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
