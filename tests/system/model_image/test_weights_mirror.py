"""The production weights path: mirror once into S3 with a sha256 manifest; compile reads
the mirror and refuses anything that does not match it. Nothing stored is overwritten."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.support.sd21_testlib import BUCKET, compile_args, subprocess_env

MODEL_ID = "local/tiny-sd21"


def mirror(s3_env, source, revision: str, dest: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sd21.weights", "--from-dir", str(source), "--model-id", MODEL_ID,
                           "--revision", revision, "--dest", dest],
                          env=subprocess_env(s3_env), capture_output=True, text=True, timeout=120)


def compile_from(s3_env, weights: str, revision: str) -> subprocess.CompletedProcess:
    args = compile_args(weights, "--model-revision", revision)  # a revision of its own: a version to build
    return subprocess.run([sys.executable, "-m", "sd21.compile", *args], env=subprocess_env(s3_env),
                          capture_output=True, text=True, timeout=300)


def test_mirror_writes_a_manifest_of_every_file_and_is_idempotent(s3_env, s3_client, tiny_weights):
    dest = f"s3://{BUCKET}/weights/mirror-a/"
    first = mirror(s3_env, tiny_weights, "rev-a", dest)
    assert first.returncode == 0, first.stderr
    manifest = json.loads(s3_client.get_object(Bucket=BUCKET, Key="weights/mirror-a/weights-manifest.json")["Body"].read())
    assert (manifest["model_id"], manifest["revision"]) == (MODEL_ID, "rev-a")
    paths = {entry["path"] for entry in manifest["files"]}
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json"} <= paths
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"])
    again = mirror(s3_env, tiny_weights, "rev-a", dest)
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_a_different_mirror_is_never_overwritten(s3_env, s3_client, tiny_weights, tmp_path):
    dest = f"s3://{BUCKET}/weights/mirror-b/"
    assert mirror(s3_env, tiny_weights, "rev-b", dest).returncode == 0
    before = s3_client.get_object(Bucket=BUCKET, Key="weights/mirror-b/weights-manifest.json")["Body"].read()
    other = shutil.copytree(tiny_weights, tmp_path / "other")
    (other / "vae" / "config.json").write_text((other / "vae" / "config.json").read_text() + " ")
    result = mirror(s3_env, other, "rev-b", dest)
    assert result.returncode == 4 and "nothing was overwritten" in result.stderr
    assert s3_client.get_object(Bucket=BUCKET, Key="weights/mirror-b/weights-manifest.json")["Body"].read() == before


def test_compile_refuses_a_tampered_mirror_and_commits_nothing(s3_env, s3_client, tiny_weights):
    dest = f"s3://{BUCKET}/weights/mirror-c/"
    assert mirror(s3_env, tiny_weights, "rev-c", dest).returncode == 0
    s3_client.put_object(Bucket=BUCKET, Key="weights/mirror-c/vae/config.json", Body=b"{}")
    result = compile_from(s3_env, dest, "rev-c")
    assert result.returncode == 4, result.stderr
    assert "vae/config.json does not match the weights manifest" in result.stderr
    assert "Traceback" not in result.stderr
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=BUCKET, Prefix="models/").get("Contents", [])]
    assert not [k for k in keys if k.endswith("manifest.json") and "rev-c" in k]


def test_compile_refuses_a_mirror_of_another_revision(s3_env, tiny_weights):
    dest = f"s3://{BUCKET}/weights/mirror-d/"
    assert mirror(s3_env, tiny_weights, "rev-d", dest).returncode == 0
    result = compile_from(s3_env, dest, "rev-other")
    assert result.returncode == 4, result.stderr
    assert "mirrors local/tiny-sd21@rev-d, but this compile is for local/tiny-sd21@rev-other" in result.stderr


def test_compile_without_a_mirror_says_how_to_make_one(s3_env):
    result = compile_from(s3_env, f"s3://{BUCKET}/weights/nothing-here/", "rev-e")
    assert result.returncode == 3
    assert "sd21-mirror-weights --dest" in result.stderr and "Traceback" not in result.stderr
