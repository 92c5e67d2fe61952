"""Artifact identity: stable version hash, S3 layout, name validation, stdlib-only import."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.sd21_testlib import MODEL_IMAGE


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


def test_the_default_versions_change_only_on_purpose():
    """The version names every deployed artifact: a change of any compile input (or of how
    they are hashed) makes a new one and a new compile. Update these on purpose only."""
    from sd21.artifact import CompileInputs, artifact_version

    # Issue 20: PJRT_DEVICE=CPU in the compiler env, `--target inf2` as two tokens.
    assert artifact_version(CompileInputs.defaults("neuron")) == "f20243a5c1da248f"
    assert artifact_version(CompileInputs.defaults("cpu")) == "8107cd5a9449df39"
    assert '"backend":"cpu"' in CompileInputs.defaults("cpu").canonical_json()  # sorted, compact


@pytest.mark.parametrize("change, message", [
    ({"backend": "tpu"}, "invalid backend"),
    ({"dtype": "int8"}, "invalid dtype"),
    ({"vae_decoder_dtype": "int8"}, "invalid vae_decoder_dtype"),
    ({"model_id": ""}, "must be non-empty"),
    ({"model_revision": ""}, "must be non-empty"),
    ({"neuron_sdk": "latest"}, "invalid Neuron SDK"),
    ({"image_size": 768}, "only 512x512"),
    ({"latent_shape": (1, 4, 96, 96)}, "only 512x512"),
    ({"latent_shape": (1, 4, 64, 32)}, "only 512x512"),
    ({"image_size": 768, "latent_shape": (1, 4, 96, 96)}, "only 512x512"),  # consistent, still not 512
    ({"image_size": 256, "latent_shape": (1, 4, 32, 32)}, "only 512x512"),
])
def test_compile_inputs_refuse_what_cannot_be_built(change, message):
    import dataclasses

    from sd21.artifact import CompileInputs

    with pytest.raises(ValueError, match=message):
        CompileInputs(**change)
    inputs = CompileInputs()
    with pytest.raises(dataclasses.FrozenInstanceError):
        inputs.backend = "cpu"


@pytest.mark.parametrize("bucket, ok", [("models-1.example", True), ("abc", True), ("ab", False), ("-abc", False),
                                        ("Abc", False), ("abc-", False), ("a" * 63, True), ("a" * 64, False),
                                        (None, False)])
def test_bucket_names(bucket, ok):
    from sd21.artifact import validate_bucket

    if ok:
        assert validate_bucket(bucket) == bucket
    else:
        with pytest.raises(ValueError, match="invalid S3 bucket name"):
            validate_bucket(bucket)


def test_describe_files_lists_every_file_but_the_manifest_sorted_with_checksums(tmp_path):
    import hashlib

    from sd21.artifact import describe_files, sha256_file

    big = bytes(range(256)) * 5000  # more than one read chunk
    for name, data in (("z.bin", big), ("manifest.json", b"{}"), ("a/b.txt", b"b"), ("m.txt", b"")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "a" / "manifest.json").write_bytes(b"nested: kept")
    entries = describe_files(tmp_path)
    assert [e["path"] for e in entries] == ["a/b.txt", "a/manifest.json", "m.txt", "z.bin"]
    assert entries[-1] == {"path": "z.bin", "size": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    assert sha256_file(tmp_path / "z.bin", chunk=7) == hashlib.sha256(big).hexdigest()
    assert sha256_file(tmp_path / "m.txt") == hashlib.sha256(b"").hexdigest()
