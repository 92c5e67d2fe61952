"""Artifact identity: stable version hash, S3 layout, name validation, stdlib-only import."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sd21_testlib import MODEL_IMAGE


def test_version_is_stable_and_tracks_every_input():
    from sd21.artifact import CompileInputs, artifact_version

    base = CompileInputs.defaults("neuron")
    assert artifact_version(base) == artifact_version(CompileInputs.defaults("neuron"))
    assert len(artifact_version(base)) == 16
    variants = [
        CompileInputs.defaults("cpu"),
        CompileInputs.defaults("neuron", neuron_sdk="2.30.0"),
        CompileInputs.defaults("neuron", model_revision="other"),
        CompileInputs.defaults("neuron", compiler_args=(("unet", ("--model-type=transformer",)),)),
    ]
    assert len({artifact_version(v) for v in [base, *variants]}) == 1 + len(variants)
    assert base.dtype == "bfloat16" and CompileInputs.defaults("cpu").dtype == "float32"
    assert "--model-type=unet-inference" in base.compiler_args_for("unet")


def test_prefix_and_validation():
    from sd21.artifact import CompileInputs, artifact_prefix

    assert artifact_prefix("sd21-512", "0123456789abcdef") == "models/sd21-512/0123456789abcdef/"
    for bad_name in ("", "UPPER", "-lead", "a/b", "x" * 64):
        with pytest.raises(ValueError, match="invalid model name"):
            artifact_prefix(bad_name, "0123456789abcdef")
    with pytest.raises(ValueError, match="invalid artifact version"):
        artifact_prefix("sd21", "../etc")
    with pytest.raises(ValueError, match="invalid backend"):
        CompileInputs.defaults("tpu")
    with pytest.raises(ValueError, match="512x512"):
        CompileInputs.defaults("cpu", image_size=768)


def test_artifact_and_openapi_import_without_torch():
    code = ("import sys; import sd21.artifact; from sd21.server import openapi_document; "
            "doc = openapi_document(); assert '/ready' in doc['paths'] and '/health' in doc['paths']; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], cwd=MODEL_IMAGE, check=True, timeout=60)
