"""Compile is idempotent and version-checked; staging verifies, publishes atomically, and no-ops."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sd21.stage import STAGE_REPORT
from tests.support.sd21_testlib import BUCKET, MODEL_NAME, compile_args, run_stage, subprocess_env


def _snapshot(s3_client):
    return {obj["Key"]: (obj["ETag"], obj["LastModified"])
            for obj in s3_client.list_objects_v2(Bucket=BUCKET, Prefix="models/")["Contents"]}


def test_second_compile_uploads_nothing(s3_client, artifact_version, tiny_weights, capsys):
    from sd21 import compile as compile_cli

    before = _snapshot(s3_client)
    assert compile_cli.main(compile_args(tiny_weights, "--expected-version", artifact_version)) == 0
    assert _snapshot(s3_client) == before
    assert "already present" in capsys.readouterr().err


def test_version_mismatch_fails_clearly(s3_env, artifact_version, tiny_weights):
    result = subprocess.run([sys.executable, "-m", "sd21.compile", *compile_args(tiny_weights)],
                            env=subprocess_env(s3_env) | {"SD21_MODEL_VERSION": "0123456789abcdef"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "0123456789abcdef" in result.stderr and artifact_version in result.stderr
    assert "Traceback" not in result.stderr


def test_a_neuron_compile_refuses_a_compiler_environment_other_than_the_hashed_one(
        s3_env, tiny_weights, monkeypatch, capsys):
    """Refused in one line (exit 2), not set behind the pod spec's back (sd21/compile.py)."""
    from sd21 import compile as compile_cli

    monkeypatch.setenv("NEURON_FUSE_SOFTMAX", "0")
    monkeypatch.delenv("PJRT_DEVICE", raising=False)
    monkeypatch.delenv("SD21_IMAGE_NEURON_SDK", raising=False)
    assert compile_cli.main(compile_args(tiny_weights, "--backend", "neuron")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "NEURON_FUSE_SOFTMAX=0 (hashed: 1)" in err and "PJRT_DEVICE=<unset> (hashed: CPU)" in err


def test_missing_weights_and_bad_settings_fail_clearly(s3_env, tmp_path):
    from sd21 import compile as compile_cli

    # another revision: that version is absent, so compile must look for weights
    assert compile_cli.main(compile_args(tmp_path / "nope", "--model-revision", "absent")) == 3
    assert compile_cli.main(["--backend", "cpu"]) == 2  # no bucket
    assert compile_cli.main(compile_args(tmp_path, "--model-name", "Bad_Name")) == 2


def test_staged_dir_is_complete_and_second_run_is_a_noop(s3_env, staged_dir, artifact_version):
    version_dir = staged_dir / artifact_version
    manifest = json.loads((version_dir / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert (version_dir / entry["path"]).stat().st_size == entry["size"]
    assert (staged_dir / "current").resolve() == version_dir.resolve()
    result = run_stage(s3_env, staged_dir, artifact_version)
    assert result.returncode == 0 and "already staged" in result.stderr


def test_missing_version_exits_nonzero(s3_env, tmp_path):
    result = run_stage(s3_env, tmp_path / "dest", "fedcba9876543210")
    assert result.returncode == 3
    assert "not found" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "dest" / "fedcba9876543210").exists()


@pytest.fixture()
def artifact_copy(s3_client, artifact_version):
    """The artifact copied under another model name, so breaking it leaves the shared one intact."""
    name = "tiny-broken"
    source, target = f"models/{MODEL_NAME}/{artifact_version}/", f"models/{name}/{artifact_version}/"
    manifest = json.loads(s3_client.get_object(Bucket=BUCKET, Key=source + "manifest.json")["Body"].read())
    archive = s3_client.get_object(Bucket=BUCKET, Key=source + manifest["archive"]["key"])["Body"].read()
    s3_client.put_object(Bucket=BUCKET, Key=target + "manifest.json", Body=json.dumps(manifest).encode())
    archive_key = target + manifest["archive"]["key"]
    yield name, archive_key, archive
    for key in (archive_key, target + "manifest.json"):
        s3_client.delete_object(Bucket=BUCKET, Key=key)


@pytest.mark.parametrize("damage", ["truncated", "flipped_byte"])
def test_corrupt_object_leaves_destination_untouched_then_rerun_succeeds(
        s3_client, s3_env, artifact_version, artifact_copy, tmp_path, damage):
    name, archive_key, archive = artifact_copy
    dest = tmp_path / "model"
    published = dest / "0123456789abcdef"  # an earlier version this pod staged: kept
    published.mkdir(parents=True)
    (published / "manifest.json").write_text("{}")
    if damage == "truncated":
        broken = archive[: len(archive) // 2]
    else:
        middle = len(archive) // 2
        broken = archive[:middle] + bytes([archive[middle] ^ 0xFF]) + archive[middle + 1:]
    s3_client.put_object(Bucket=BUCKET, Key=archive_key, Body=broken)

    result = run_stage(s3_env, dest, artifact_version, name=name)
    assert result.returncode == 4, result.stderr
    assert "corrupt" in result.stderr and "Traceback" not in result.stderr
    # Nothing published; the failed run's report stays for the cold-start figures.
    assert sorted(p.name for p in dest.iterdir()) == sorted([published.name, STAGE_REPORT])
    assert json.loads((dest / STAGE_REPORT).read_text())["failed"] == 4

    s3_client.put_object(Bucket=BUCKET, Key=archive_key, Body=archive)
    result = run_stage(s3_env, dest, artifact_version, name=name)
    assert result.returncode == 0, result.stderr
    assert (dest / artifact_version / "manifest.json").is_file()
    assert sorted(p.name for p in dest.iterdir()) == sorted([published.name, "current", artifact_version, STAGE_REPORT])


def test_no_credentials_is_its_own_exit_code_not_version_missing(s3_env, tmp_path):
    """A pod admitted before its Pod Identity association took effect has no credentials:
    stage and compile say so (exit 6), distinct from a missing version (3)."""
    env = {k: v for k, v in subprocess_env(s3_env).items()
           if not k.startswith(("AWS_ACCESS_KEY", "AWS_SECRET", "AWS_SESSION", "AWS_PROFILE"))}
    env.update({"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                "AWS_EC2_METADATA_DISABLED": "true"})
    stage = subprocess.run([sys.executable, "-m", "sd21.stage", "--backend", "cpu", "--bucket", BUCKET,
                            "--model-name", MODEL_NAME, "--version", "fedcba9876543210", "--dest", str(tmp_path)],
                           env=env, capture_output=True, text=True, timeout=60)
    assert stage.returncode == 6 and "No AWS credentials" in stage.stderr and "Traceback" not in stage.stderr
    compile_ = subprocess.run([sys.executable, "-m", "sd21.compile", *compile_args(tmp_path, "--model-revision", "x")],
                              env=env, capture_output=True, text=True, timeout=60)
    assert compile_.returncode == 6 and "no AWS credentials" in compile_.stderr

