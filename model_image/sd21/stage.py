"""sd21-stage (initContainer): stream one artifact version from S3 into the model directory.

Parallel ranged GETs feed the tar extractor directly (no archive copy on disk),
every file's sha256 is checked against the manifest, and the version directory
appears only by an atomic rename once everything verified. Layout:
  <dest>/<version>/...   the staged artifact (manifest.json inside)
  <dest>/current         symlink to the last staged version
Leftovers of earlier attempts (a killed download, a half-made link) are removed
first, so repeated kills never fill the volume; published versions stay.
Exit codes: 0 staged or already staged, 2 bad settings, 3 version missing or
unreadable, 4 corrupt artifact, 5 S3 unreachable after retries, 6 no AWS credentials,
7 the node has no Neuron driver (backend neuron; checked before any download).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tarfile
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Optional

from . import s3
from .artifact import (
    BACKENDS, MANIFEST_NAME, artifact_prefix, validate_bucket, validate_model_name, validate_version,
)
from .contract import StageEnv
from .devices import DeviceUnavailable, check_neuron_driver
from .env import fail, progress, read


class CorruptArtifact(Exception):
    pass


def parse_args(argv=None, environ=None) -> argparse.Namespace:
    """The flags, defaulting to the environment (sd21.contract.StageEnv)."""
    env = read(StageEnv, environ)
    parser = argparse.ArgumentParser(prog="sd21-stage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=env.backend, choices=BACKENDS,
                        help="neuron: check the node's Neuron driver before downloading anything")
    parser.add_argument("--bucket", default=env.bucket)
    parser.add_argument("--model-name", default=env.model_name)
    parser.add_argument("--version", default=env.model_version)
    parser.add_argument("--dest", default=env.model_dir)
    parser.add_argument("--workers", type=int, default=env.workers)
    parser.add_argument("--chunk-mib", type=int, default=env.chunk_mib)
    return parser.parse_args(argv)


class RangedStream:
    """Read-only file object over an S3 object, fetched as parallel ranged GETs.

    Chunks are requested up to `window` ahead and handed out in order, so memory
    stays bounded (window x chunk) while the network stays busy.
    """

    def __init__(self, client, bucket: str, key: str, size: int, chunk: int, workers: int):
        self.client, self.bucket, self.key, self.size, self.chunk = client, bucket, key, size, chunk
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="range")
        self.window = workers * 2
        self.next_offset = 0
        self.pending: list[Future] = []
        self.buffer = memoryview(b"")
        self.position = 0
        self.digest = hashlib.sha256()
        self._last_report = -10

    def _fetch(self, start: int, end: int) -> bytes:
        def get() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end - 1}")["Body"]
            data = body.read()
            if len(data) != end - start:
                raise s3.TransientError(f"short read {len(data)} of {end - start} bytes at {start}")
            return data

        return s3.with_retries(get, f"{self.key} bytes {start}-{end - 1}")

    def _fill_window(self) -> None:
        while len(self.pending) < self.window and self.next_offset < self.size:
            end = min(self.next_offset + self.chunk, self.size)
            self.pending.append(self.pool.submit(self._fetch, self.next_offset, end))
            self.next_offset = end

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            if not self.buffer:
                self._fill_window()
                if not self.pending:
                    break
                data = self.pending.pop(0).result()
                self.digest.update(data)
                self.buffer = memoryview(data)
            take = len(self.buffer) if n < 0 else min(n - len(out), len(self.buffer))
            out += self.buffer[:take]
            self.buffer = self.buffer[take:]
        self.position += len(out)
        self._report()
        return bytes(out)

    def _report(self) -> None:
        percent = int(100 * self.position / max(self.size, 1))
        if percent >= self._last_report + 10:
            self._last_report = percent
            progress(f"staged {percent}% ({self.position} of {self.size} bytes)")

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def safe_member_path(root: Path, name: str) -> Path:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise CorruptArtifact(f"unsafe path in archive: {name!r}")
    return root.joinpath(*path.parts)


def check_manifest_shape(manifest) -> None:
    """CorruptArtifact unless the manifest has the fields staging reads, of their types: a
    manifest of another shape is a bad artifact (exit 4), not an S3 outage (exit 5)."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("archive"), dict):
        raise CorruptArtifact("its 'archive' is not an object")
    _check_fields(manifest["archive"], "'archive'", key=str, size=int, sha256=str)
    files = manifest.get("files")
    if not isinstance(files, list):
        raise CorruptArtifact("its 'files' is not a list")
    for index, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise CorruptArtifact(f"files[{index}] is not an object")
        _check_fields(entry, f"files[{index}]", path=str, size=int, sha256=str)


def _check_fields(entry: dict, where: str, **types) -> None:
    for name, kind in types.items():
        if name not in entry:
            raise CorruptArtifact(f"{where} has no {name!r}")
        if not isinstance(entry[name], kind) or isinstance(entry[name], bool):
            raise CorruptArtifact(f"{where} {name!r} is not {'an integer' if kind is int else 'a string'}")


def extract_verified(stream: RangedStream, target: Path, manifest: dict) -> None:
    """Extract while downloading; verify every file and the archive checksum."""
    expected = {entry["path"]: entry for entry in manifest["files"]}
    seen: dict[str, tuple[int, str]] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=1 << 20) as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise CorruptArtifact(f"unexpected non-file entry {member.name!r} in archive")
                destination = safe_member_path(target, member.name)
                destination.parent.mkdir(parents=True, exist_ok=True)
                digest, size = hashlib.sha256(), 0
                source = tar.extractfile(member)
                with open(destination, "wb") as handle:
                    while block := source.read(1 << 20):
                        digest.update(block)
                        size += len(block)
                        handle.write(block)
                seen[member.name] = (size, digest.hexdigest())
    except (tarfile.TarError, EOFError) as error:
        raise CorruptArtifact(f"archive is not a valid tar stream: {error}") from error
    stream.read()  # tar padding: the archive checksum covers every byte
    if stream.digest.hexdigest() != manifest["archive"]["sha256"]:
        raise CorruptArtifact("archive sha256 does not match the manifest")
    for path, entry in expected.items():
        if path not in seen:
            raise CorruptArtifact(f"{path} is missing from the archive")
        if seen[path] != (entry["size"], entry["sha256"]):
            raise CorruptArtifact(f"{path}: size/sha256 {seen[path]} differ from manifest")
    extra = set(seen) - set(expected)
    if extra:
        raise CorruptArtifact(f"files not in the manifest: {sorted(extra)}")


def point_current(dest: Path, version: str) -> None:
    """Atomically repoint <dest>/current at the version directory."""
    link_tmp = dest / f".current-{uuid.uuid4().hex}"
    os.symlink(version, link_tmp)
    os.replace(link_tmp, dest / "current")


def is_published(entry: Path) -> bool:
    """A version directory that an earlier stage completed (it renames into place last)."""
    try:
        validate_version(entry.name)
    except ValueError:
        return False
    return not entry.is_symlink() and (entry / MANIFEST_NAME).is_file()


def remove_leftovers(dest: Path) -> list[str]:
    """Delete everything in dest that is neither a published version nor `current`."""
    removed = []
    if not dest.is_dir():
        return removed
    for entry in sorted(dest.iterdir()):
        if (entry.name == "current" and entry.is_symlink()) or is_published(entry) or entry.name == STAGE_REPORT:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    if removed:
        progress(f"removed leftovers of earlier attempts from {dest}: {', '.join(removed)}")
    return removed


# What staging took, for the server's cold-start metrics (sd21.service): beside the versions.
# Kept across attempts (remove_leftovers spares it): the kubelet restarts a failed
# initContainer on the same emptyDir, and the attempts before the successful one are part
# of this pod's cold start (first_started_at, attempts).
STAGE_REPORT = ".stage-report.json"


def _earlier_failures(dest: Path, version: str) -> tuple[float, int]:
    """(first_started_at, attempts) of the failed attempts just before this one, if any."""
    try:
        last = json.loads((dest / STAGE_REPORT).read_text())
        if last.get("failed") and last.get("version") == version:
            return float(last["first_started_at"]), int(last["attempts"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # none, or unreadable: this attempt starts the series
    return 0.0, 0


def write_report(dest: Path, version: str, started_at: float, seconds: float, size: int,
                 failed: Optional[int] = None) -> None:
    first_started_at, attempts = _earlier_failures(dest, version)
    report = {"version": version, "started_at": started_at, "seconds": round(seconds, 3), "bytes": size,
              "first_started_at": first_started_at or started_at, "attempts": attempts + 1}
    if failed is not None:
        report["failed"] = failed  # the exit code
    (dest / STAGE_REPORT).write_text(json.dumps(report))


def write_failure_report(dest: Path, version: str, started_at: float, code: int) -> None:
    """A failed attempt still leaves its report; a volume we cannot write gets none."""
    try:
        if dest.is_dir():
            write_report(dest, version, started_at, time.time() - started_at, 0, failed=code)
    except OSError:
        pass


def stage(client, bucket: str, name: str, version: str, dest: Path, workers: int, chunk: int,
          started_at: Optional[float] = None) -> int:
    started_at = started_at or time.time()
    remove_leftovers(dest)
    final = dest / version
    if (final / MANIFEST_NAME).is_file():
        point_current(dest, version)
        write_report(dest, version, started_at, time.time() - started_at, 0)
        progress(f"version {version} already staged in {final}; nothing to do")
        return 0
    prefix = artifact_prefix(name, version)
    missing = (f"Version {version} was not found in s3://{bucket}/{prefix}: it is not compiled yet, its upload "
               "never committed, or this pod may not read it.")
    # Checked by listing first: a GetObject of a missing key is a 403 under our IAM (see s3.object_exists).
    try:
        present = s3.with_retries(lambda: s3.object_exists(client, bucket, prefix + MANIFEST_NAME),
                                  "manifest lookup")
        body = s3.with_retries(lambda: client.get_object(Bucket=bucket, Key=prefix + MANIFEST_NAME)["Body"].read(),
                               "manifest") if present else None
    except Exception as error:  # noqa: BLE001
        if s3.is_not_found(error) or s3.is_access_denied(error):
            return fail(f"{missing} ({s3.error_code(error)})", 3)
        raise
    if body is None:
        return fail(missing, 3)
    try:
        manifest = json.loads(body)
        archive_key = prefix + manifest["archive"]["key"]
        archive_size = int(manifest["archive"]["size"])
    except (ValueError, KeyError, TypeError) as error:
        return fail(f"The manifest s3://{bucket}/{prefix}{MANIFEST_NAME} is corrupt ({type(error).__name__}).", 4)
    try:
        check_manifest_shape(manifest)
    except CorruptArtifact as error:
        return fail(f"The manifest s3://{bucket}/{prefix}{MANIFEST_NAME} is corrupt: {error}.", 4)
    if manifest.get("version") != version:
        return fail(f"The manifest at s3://{bucket}/{prefix} is for version {manifest.get('version')!r}.", 4)
    try:
        head = s3.with_retries(lambda: client.head_object(Bucket=bucket, Key=archive_key), "archive head")
    except Exception as error:  # noqa: BLE001
        if s3.is_not_found(error) or s3.is_access_denied(error):
            return fail(f"The archive s3://{bucket}/{archive_key} named by the manifest cannot be read "
                        f"({s3.error_code(error)}): corrupt or incomplete artifact.", 4)
        raise
    if head["ContentLength"] != archive_size:
        return fail(f"The archive s3://{bucket}/{archive_key} is {head['ContentLength']} bytes but the manifest "
                    f"says {archive_size}: corrupt or truncated artifact.", 4)
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".staging-{version}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    started = time.monotonic()
    stream = RangedStream(client, bucket, archive_key, head["ContentLength"], chunk, workers)
    try:
        extract_verified(stream, staging, manifest)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / MANIFEST_NAME).is_file():
                raise
            shutil.rmtree(staging)  # another stager won the race with the same bytes
    except CorruptArtifact as error:
        shutil.rmtree(staging, ignore_errors=True)
        return fail(f"The artifact s3://{bucket}/{archive_key} is corrupt ({error}); nothing was published.", 4)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        stream.close()
    point_current(dest, version)
    elapsed = time.monotonic() - started
    write_report(dest, version, started_at, time.time() - started_at, manifest["archive"]["size"])
    size_mib = manifest["archive"]["size"] / 2**20
    progress(f"staged version {version} into {final}: {size_mib:.1f} MiB in {elapsed:.2f}s "
             f"({size_mib / max(elapsed, 1e-6):.0f} MiB/s), {len(manifest['files'])} files verified")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.bucket or not args.version:
        return fail(f"set {StageEnv.var('bucket').name} and {StageEnv.var('model_version').name} "
                    "(or --bucket and --version)")
    try:
        bucket = validate_bucket(args.bucket)
        name = validate_model_name(args.model_name)
        version = validate_version(args.version)
    except ValueError as error:
        return fail(str(error))
    if args.workers < 1 or args.chunk_mib < 1:
        return fail("--workers and --chunk-mib must be at least 1")
    if args.backend == "neuron":
        try:
            check_neuron_driver()  # a node without the driver never gets the gigabytes
        except DeviceUnavailable as error:
            return fail(str(error), 7)
    started_at = time.time()
    code = _stage_or_exit_code(args, bucket, name, version, started_at)
    if code != 0:
        write_failure_report(Path(args.dest), version, started_at, code)
    return code


def _stage_or_exit_code(args: argparse.Namespace, bucket: str, name: str, version: str, started_at: float) -> int:
    try:
        return stage(s3.client(args.workers + 2), bucket, name, version, Path(args.dest),
                     args.workers, args.chunk_mib << 20, started_at)
    except Exception as error:  # noqa: BLE001 - clear message instead of a traceback
        if s3.is_missing_credentials(error):
            return fail("No AWS credentials: the Pod Identity association of this ServiceAccount was not "
                        "effective when the pod started; delete the pod to retry.", 6)
        if isinstance(error, OSError) and not s3.is_transient(error):
            return fail(f"Staging into {args.dest} failed: {error}.", 1)
        return fail(f"S3 was unreachable after retries: {type(error).__name__}: {error}.", 5)


if __name__ == "__main__":
    raise SystemExit(main())
