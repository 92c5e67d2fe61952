"""sd21-stage in process against S3 on loopback (moto), on artifacts published by
sd21-compile's own packaging and upload (compile.package, compile.upload) from a few
generated files: no model is traced, so each case takes a fraction of a second.
(tests/system/model_image/test_compile_and_stage.py stages a really compiled artifact.)"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest

from sd21 import compile as compile_cli, stage
from sd21.artifact import CompileInputs, artifact_prefix
from sd21.stage import STAGE_REPORT
from tests.support.sd21_testlib import BUCKET

VERSION = "0123456789abcdef"
# Sizes chosen so that 1 MiB chunks split files and the tar's padding across chunks.
FILES = {"traced/unet.pt": 3 * 2**20 + 2**19 + 17, "traced/vae_decoder.pt": 2**20 - 5, "tokenizer/vocab.json": 1000,
         "scheduler/scheduler_config.json": 0, "text_encoder/sub/config.json": 10}


class Published:
    def __init__(self, s3_client, tmp_path: Path, version: str = VERSION):
        self.client, self.name, self.version = s3_client, f"stage-{uuid.uuid4().hex[:8]}", version
        source = tmp_path / "artifact"
        for path, size in FILES.items():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            (source / path).write_bytes(os.urandom(size))
        self.files = {path: (source / path).read_bytes() for path in FILES}
        inputs = CompileInputs.defaults("cpu", model_id="local/tiny", model_revision="test")
        archive = tmp_path / "artifact.tar"
        self.manifest = compile_cli.package(inputs, self.name, version, source, archive)
        self.archive = archive.read_bytes()
        assert compile_cli.upload(s3_client, BUCKET, self.name, version, archive, self.manifest)
        self.prefix = artifact_prefix(self.name, version)
        self.archive_key = self.prefix + self.manifest["archive"]["key"]

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=body)

    def put_manifest(self, manifest) -> None:
        self.put(self.prefix + "manifest.json", json.dumps(manifest).encode())


@pytest.fixture()
def published(s3_client, tmp_path) -> Published:
    return Published(s3_client, tmp_path)


def run(published: Published, dest: Path, *extra: str, version: str | None = None) -> int:
    return stage.main(["--backend", "cpu", "--bucket", BUCKET, "--model-name", published.name,
                       "--version", version or published.version, "--dest", str(dest), "--workers", "3",
                       "--chunk-mib", "1", *extra])


def staged_files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*")
            if p.is_file() and p.name != "manifest.json"}


def test_staging_publishes_every_file_verified_and_points_current_at_it(published, tmp_path, capsys):
    dest = tmp_path / "volume" / "model"  # made, parents included
    before = time.time()
    assert run(published, dest) == 0
    after = time.time()
    final = dest / published.version
    assert staged_files(final) == published.files
    assert json.loads((final / "manifest.json").read_text()) == published.manifest
    assert os.readlink(dest / "current") == published.version  # relative: the volume mounts anywhere
    assert sorted(p.name for p in dest.iterdir()) == sorted([published.version, "current", STAGE_REPORT])
    report = json.loads((dest / STAGE_REPORT).read_text())
    assert report["version"] == published.version and report["bytes"] == len(published.archive)
    assert before <= report["started_at"] <= after and 0 < report["seconds"] <= after - before
    err = capsys.readouterr().err
    size_mib = len(published.archive) / 2**20
    line = re.search(r"staged version \w+ into (\S+): ([\d.]+) MiB in ([\d.]+)s \((\d+) MiB/s\), (\d+) files", err)
    assert line and line.group(1) == str(final) and line.group(2) == f"{size_mib:.1f}"
    seconds, rate = float(line.group(3)), int(line.group(4))
    assert 0.005 < seconds <= after - before and int(line.group(5)) == len(FILES)
    # The rate from the figures printed beside it (the time is rounded to 10 ms there).
    assert size_mib / (seconds + 0.005) - 1 <= rate <= size_mib / (seconds - 0.005) + 1
    progress = [tuple(map(int, found)) for found in re.findall(r"staged (\d+)% \((\d+) of (\d+) bytes\)", err)]
    assert len(progress) >= 3, err
    for percent, position, total in progress:
        assert total == len(published.archive) and percent == 100 * position // total


def test_a_staged_version_is_not_downloaded_again(published, tmp_path, capsys):
    dest = tmp_path / "model"
    assert run(published, dest) == 0
    (dest / "current").unlink()
    published.put(published.archive_key, b"not read again")
    started = time.time()
    assert run(published, dest) == 0
    assert "already staged" in capsys.readouterr().err
    assert os.readlink(dest / "current") == published.version
    report = json.loads((dest / STAGE_REPORT).read_text())
    assert report["bytes"] == 0 and report["started_at"] >= started and report["seconds"] < 0.5


@pytest.mark.parametrize("damage", ["truncated", "flipped_byte", "extra_file", "missing_file", "other_bytes",
                                    "other_archive_checksum"])
def test_a_damaged_artifact_publishes_nothing_and_a_repaired_one_stages(published, tmp_path, capsys, damage):
    dest = tmp_path / "model"
    kept = dest / "fedcba9876543210"  # an earlier version this pod staged
    kept.mkdir(parents=True)
    (kept / "manifest.json").write_text("{}")
    manifest = json.loads(json.dumps(published.manifest))
    middle = len(published.archive) // 2
    if damage == "truncated":
        published.put(published.archive_key, published.archive[:middle])
        manifest["archive"]["size"] = middle  # consistent sizes: only the content is short
    elif damage == "flipped_byte":
        published.put(published.archive_key, published.archive[:middle] + bytes([published.archive[middle] ^ 1])
                      + published.archive[middle + 1:])
    elif damage == "extra_file":
        manifest["files"] = manifest["files"][1:]
    elif damage == "missing_file":
        manifest["files"].append({"path": "traced/text_encoder.pt", "size": 1, "sha256": "0" * 64})
    elif damage == "other_bytes":
        manifest["files"][0]["sha256"] = "f" * 64
    else:  # every file as described; the archive as a whole is not the one the manifest names
        manifest["archive"]["sha256"] = "0" * 64
    published.put_manifest(manifest)
    assert run(published, dest) == 4
    assert "nothing was published" in capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == sorted([kept.name, STAGE_REPORT])  # the failure's report
    published.put(published.archive_key, published.archive)
    published.put_manifest(published.manifest)
    assert run(published, dest) == 0
    assert staged_files(dest / published.version) == published.files and kept.is_dir()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(version="0000000000000000"), "is for version '0000000000000000'"),
    (lambda m: m.pop("files"), "is corrupt: its 'files' is not a list"),
    (lambda m: m["archive"].update(size="many"), "is corrupt (ValueError)"),
    (lambda m: m["archive"].update(size=1), "bytes but the manifest says 1"),
    (lambda m: m["archive"].update(size=m["archive"]["size"] + 1), "corrupt or truncated artifact"),
    (lambda m: m["archive"].update(key="artifact-gone.tar"), "cannot be read"),
])
def test_a_manifest_that_does_not_describe_the_archive_is_refused(published, tmp_path, capsys, change, message):
    assert_bad_artifact(published, tmp_path, capsys, change, message)


def assert_bad_artifact(published, tmp_path, capsys, change, message) -> None:
    """The changed manifest is a bad artifact (exit 4, the reason said) and nothing is published."""
    manifest = json.loads(json.dumps(published.manifest))
    change(manifest)
    published.put_manifest(manifest)
    assert run(published, tmp_path / "model") == 4
    assert message in capsys.readouterr().err
    assert not (tmp_path / "model" / published.version).exists()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(files={entry["path"]: entry for entry in m["files"]}), "'files' is not a list"),
    (lambda m: m["files"][0].pop("size"), "has no 'size'"),
    (lambda m: m["files"][1].update(sha256=7), "'sha256' is not"),
    (lambda m: m["files"].append("traced/unet.pt"), "is not an object"),
    (lambda m: m["archive"].update(sha256=None), "'sha256' is not"),
])
def test_a_manifest_of_the_wrong_shape_is_a_bad_artifact_not_an_unreachable_s3(published, tmp_path, capsys,
                                                                             change, message):
    """Exit 4 (corrupt artifact: recompile), never 5 (S3 unreachable: retry), per the docstring."""
    assert_bad_artifact(published, tmp_path, capsys, change, message)


def test_failed_runs_leave_a_report_and_the_stage_phase_counts_from_the_first_try(published, tmp_path):
    """The server's cold start reads the report (sd21.service): failed attempts of the
    initContainer (restarted by the kubelet, same emptyDir) neither erase it nor vanish from it."""
    dest = tmp_path / "model"
    assert run(published, dest) == 0
    manifest = json.loads(json.dumps(published.manifest))
    manifest["files"] = {}
    published.put_manifest(manifest)
    (dest / "current").unlink()
    import shutil

    shutil.rmtree(dest / published.version)
    assert run(published, dest) == 4  # after a success: a new series of attempts
    first = json.loads((dest / STAGE_REPORT).read_text())
    assert first["failed"] == 4 and first["version"] == published.version and first["attempts"] == 1
    assert first["first_started_at"] == first["started_at"] and first["bytes"] == 0
    assert run(published, dest) == 4
    second = json.loads((dest / STAGE_REPORT).read_text())
    assert second["attempts"] == 2 and second["first_started_at"] == first["first_started_at"]
    published.put_manifest(published.manifest)
    assert run(published, dest) == 0
    report = json.loads((dest / STAGE_REPORT).read_text())
    assert "failed" not in report and report["attempts"] == 3 and report["bytes"] == len(published.archive)
    assert report["first_started_at"] == first["first_started_at"] < report["started_at"]


def test_a_manifest_that_is_not_json_is_refused(published, tmp_path, capsys):
    published.put(published.prefix + "manifest.json", b"{not json")
    assert run(published, tmp_path / "model") == 4
    assert "is corrupt (JSONDecodeError)" in capsys.readouterr().err


def test_a_version_never_compiled_is_its_own_exit_code(published, tmp_path, capsys):
    assert run(published, tmp_path / "model", version="fedcba9876543210") == 3
    err = capsys.readouterr().err
    assert "Version fedcba9876543210 was not found in s3://" in err and "not compiled yet" in err
    # A bucket that is not there (a wrong name in the settings) is the same: nothing to stage.
    assert stage.main(["--backend", "cpu", "--bucket", "sd21-no-such-bucket", "--model-name", published.name,
                       "--version", published.version, "--dest", str(tmp_path / "model")]) == 3
    assert "(NoSuchBucket)" in capsys.readouterr().err


def test_leftovers_go_first_and_published_versions_stay(published, tmp_path, capsys):
    dest = tmp_path / "model"
    half = dest / f".staging-{VERSION}-deadbeef"
    half.mkdir(parents=True)
    (half / "unet.pt").write_bytes(b"\0" * 4096)
    (dest / ".current-0123").symlink_to("nowhere")
    (dest / "fedcba9876543210").mkdir()  # a version directory without its manifest: never finished
    (dest / "0000000000000000").symlink_to(half)  # a link is never a published version
    (dest / "not-a-version").mkdir()
    (dest / "not-a-version" / "manifest.json").write_text("{}")
    (dest / "stray.bin").write_bytes(b"x")
    (dest / "stray-link").symlink_to("stray.bin")  # a link, but not `current`
    kept = dest / "aaaaaaaaaaaaaaaa"
    kept.mkdir()
    (kept / "manifest.json").write_text("{}")
    (dest / "current").symlink_to(kept.name)  # what the server reads: kept
    assert stage.remove_leftovers(dest) == sorted([half.name, ".current-0123", "fedcba9876543210",
                                                   "0000000000000000", "not-a-version", "stray.bin", "stray-link"])
    assert "removed leftovers of earlier attempts" in capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == sorted([kept.name, "current"])
    assert stage.remove_leftovers(dest) == [] and stage.remove_leftovers(tmp_path / "absent") == []
    assert run(published, dest) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted([kept.name, published.version, "current", STAGE_REPORT])


@pytest.mark.parametrize("args, message", [
    (["--bucket", ""], "set SD21_BUCKET and SD21_MODEL_VERSION"),
    (["--version", ""], "set SD21_BUCKET and SD21_MODEL_VERSION"),
    (["--bucket", "Bad_Bucket"], "bucket"),
    (["--model-name", "Bad_Name"], "model name"),
    (["--version", "v1"], "version"),
    (["--workers", "0"], "--workers and --chunk-mib must be at least 1"),
    (["--chunk-mib", "0"], "--workers and --chunk-mib must be at least 1"),
])
def test_bad_settings_exit_2_naming_them(tmp_path, capsys, args, message):
    base = {"--backend": "cpu", "--bucket": BUCKET, "--model-name": "sd21-512", "--version": VERSION,
            "--dest": str(tmp_path)}
    base.update(dict(zip(args[::2], args[1::2])))
    assert stage.main([item for pair in base.items() for item in pair]) == 2
    assert message.lower() in capsys.readouterr().err.lower()


def test_a_node_without_the_neuron_driver_downloads_nothing(published, tmp_path, capsys):
    if "neuron" in Path("/proc/devices").read_text():
        pytest.skip("this machine has the Neuron driver")
    # The image's default, and said on the command line (a string not interned like a literal).
    for backend in ([], ["--backend", "".join(["neu", "ron"])]):
        assert stage.main(["--bucket", BUCKET, "--model-name", published.name, "--version", published.version,
                           "--dest", str(tmp_path / "model"), *backend]) == 7
        assert "Neuron driver is not loaded" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("reads", [[-1], [1], [100, 2**20, 3], [2**20 + 1, 7 * 2**20]])
def test_the_ranged_stream_hands_out_the_object_in_order_whatever_the_reads(published, reads):
    stream = stage.RangedStream(published.client, BUCKET, published.archive_key, len(published.archive),
                                chunk=2**20, workers=2)
    try:
        assert stream.read(0) == b"" and stream.position == 0  # a file object's read(0)
        out = bytearray()
        for n in reads:
            chunk = stream.read(n)
            left = len(published.archive) - len(out)
            assert len(chunk) == (left if n < 0 else min(n, left))  # what was asked, no more
            out += chunk
        out += stream.read()
        assert bytes(out) == published.archive and stream.position == len(published.archive)
        assert stream.digest.hexdigest() == published.manifest["archive"]["sha256"]
        assert stream.read() == b"" and stream.read(10) == b""
    finally:
        stream.close()


def test_the_ranged_stream_keeps_a_bounded_window_ahead(published):
    stream = stage.RangedStream(published.client, BUCKET, published.archive_key, len(published.archive),
                                chunk=2**18, workers=3)
    try:
        assert stream.read(1) == published.archive[:1]
        assert stream.window == 6 and len(stream.pending) == 5  # two chunks a worker: one handed out, five ahead
        assert stream.next_offset == 6 * 2**18
    finally:
        stream.close()


def test_unsafe_member_paths_are_refused(tmp_path):
    assert stage.safe_member_path(tmp_path, "traced/unet.pt") == tmp_path / "traced" / "unet.pt"
    for name in ("/etc/passwd", "../x", "a/../../x", "", "."):
        with pytest.raises(stage.CorruptArtifact, match="unsafe path"):
            stage.safe_member_path(tmp_path, name)


def test_progress_is_logged_every_ten_percent_however_small_the_reads(published, capsys):
    stream = stage.RangedStream(published.client, BUCKET, published.archive_key, len(published.archive),
                                chunk=2**20, workers=2)
    try:
        stream.read(1000)  # the first read is logged, even at 0%
        while stream.read(50_000):
            pass
    finally:
        stream.close()
    percents = [int(found) for found in re.findall(r"staged (\d+)% ", capsys.readouterr().err)]
    assert percents[0] == 0 and percents[-1] >= 90
    assert all(10 <= later - earlier < 12 for earlier, later in zip(percents, percents[1:])), percents


def test_no_credentials_and_an_unwritable_volume_have_their_own_exit_codes(published, tmp_path, capsys,
                                                                          monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert run(published, blocked / "model") == 1  # the volume is not a directory we can write
    assert f"Staging into {blocked / 'model'} failed" in capsys.readouterr().err
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a new pod: nothing resolved yet
    assert run(published, tmp_path / "model") == 6
    assert "No AWS credentials" in capsys.readouterr().err


def test_when_another_stager_published_the_version_first_its_copy_is_kept(published, tmp_path, monkeypatch):
    """Two pods on one node staging the same version: the loser's rename fails; the winner's
    directory (same verified bytes) stays and the loser's staging copy goes."""
    def lost_the_race(source, target):
        import shutil

        shutil.copytree(source, target)  # the other stager got there first
        raise OSError(39, "Directory not empty")

    dest = tmp_path / "model"
    monkeypatch.setattr(stage.os, "rename", lost_the_race)
    assert run(published, dest) == 0
    assert staged_files(dest / published.version) == published.files
    assert sorted(p.name for p in dest.iterdir()) == sorted([published.version, "current", STAGE_REPORT])


def test_a_rename_that_fails_for_another_reason_publishes_nothing(published, tmp_path, monkeypatch, capsys):
    def full(source, target):
        raise OSError(28, "No space left on device")

    dest = tmp_path / "model"
    monkeypatch.setattr(stage.os, "rename", full)
    assert run(published, dest) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == [STAGE_REPORT]
    assert json.loads((dest / STAGE_REPORT).read_text())["failed"] == 1


def test_the_download_uses_the_chunk_size_and_a_connection_for_every_worker(published, tmp_path, monkeypatch):
    """--chunk-mib MiB per ranged GET, and enough pooled connections that no worker waits for one."""
    from sd21 import s3

    seen = {}
    make_client, stream = s3.client, stage.RangedStream

    def client(max_pool: int):
        seen["pool"] = max_pool
        return make_client(max_pool)

    def ranged(client, bucket, key, size, chunk, workers):
        seen.update(chunk=chunk, workers=workers)
        return stream(client, bucket, key, size, chunk, workers)

    monkeypatch.setattr(stage.s3, "client", client)
    monkeypatch.setattr(stage, "RangedStream", ranged)
    assert run(published, tmp_path / "model", "--workers", "3", "--chunk-mib", "2") == 0
    assert seen["chunk"] == 2 * 2**20 and seen["workers"] == 3 and seen["pool"] >= 3
