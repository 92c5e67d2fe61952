"""sd21-compile: weights -> traced parts -> one versioned artifact in S3.

Exit codes: 0 done or already present, 2 bad settings / version mismatch /
Neuron compile environment not the one the version hashes / no writable scratch
space, 3 weights not found, 4 weights do not match their manifest, 6 no AWS
credentials, 1 unexpected failure.

On the neuron backend the compiler environment (NEURON_FUSE_SOFTMAX,
NEURON_PLATFORM_TARGET_OVERRIDE, PJRT_DEVICE: sd21.artifact.NEURON_COMPILER_ENV)
must already be set when the process starts, as the compile Job's pod spec sets it:
importing diffusers imports torch_xla, which initialises torch-neuronx, so a value
set later would be hashed into the version but not applied. sd21-compile checks it
before importing any of them and refuses (exit 2) instead of setting it itself.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tarfile
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path

from . import s3
from .artifact import (
    ARCHIVE_NAME,
    BACKENDS,
    MANIFEST_NAME,
    TRACED_PARTS,
    CompileInputs,
    artifact_prefix,
    artifact_version,
    describe_files,
    upload_prefix,
    validate_bucket,
    validate_model_name,
)
from .contract import CompileEnv
from .env import fail, progress, read
from .weights import WeightsMismatch, fetch_mirror


def parse_args(argv=None, environ=None) -> argparse.Namespace:
    """The flags, defaulting to the environment (sd21.contract.CompileEnv, kept as `args.env`)."""
    env = read(CompileEnv, environ)
    parser = argparse.ArgumentParser(prog="sd21-compile", description=__doc__)
    parser.add_argument("--backend", default=env.backend, choices=BACKENDS)
    parser.add_argument("--bucket", default=env.bucket)
    parser.add_argument("--model-name", default=env.model_name)
    parser.add_argument("--expected-version", default=env.model_version,
                        help="fail unless the computed artifact version equals this")
    parser.add_argument("--model-id", default=env.model_id)
    parser.add_argument("--model-revision", default=env.model_revision)
    parser.add_argument("--weights-source", default=env.weights_source,
                        help="hub id, s3:// prefix of mirrored weights, or a local directory (default: model id)")
    parser.add_argument("--neuron-sdk", default=env.neuron_sdk)
    parser.add_argument("--workdir", default=env.workdir, help="scratch space (default: temp dir)")
    parser.add_argument("--print-version", action="store_true",
                        help="print the artifact version these inputs hash to, and exit")
    args = parser.parse_args(argv)
    args.env = env
    return args


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("torch", "torch-neuronx", "neuronx-cc", "diffusers", "transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def compile_env_refusal(mismatch: dict[str, tuple[str | None, str]]) -> str:
    """One line naming each compiler variable that differs from the hashed value."""
    found = ", ".join(f"{name}={'<unset>' if have is None else have} (hashed: {want})"
                      for name, (have, want) in sorted(mismatch.items()))
    return (f"the Neuron compile environment is not the one the artifact version hashes: {found}; "
            "set it in the pod spec (the compile Job's chart does): it must be in place before "
            "diffusers imports torch_xla, so sd21-compile does not set it itself")


def fetch_weights(source: str, inputs: CompileInputs, scratch: Path) -> tuple[str, dict]:
    """Return (path-or-hub-id, from_pretrained kwargs) for the weights."""
    if source.startswith("s3://"):
        return str(fetch_mirror(source, inputs.model_id, inputs.model_revision, scratch / "weights")), {}
    if Path(source).is_dir():
        return source, {}
    if source.startswith(("/", ".")):
        raise FileNotFoundError(f"weights directory {source} does not exist")
    return source, {"revision": inputs.model_revision}


# Where the Neuron compiler writes besides its work dir: the log in the current
# directory (neuronx-cc --logfile default "log-neuron-cc.txt"), work files under the
# temp dir (/tmp/<user>/neuroncc_compile_workdir) and the cache /var/tmp/neuron-compile-cache
# (Neuron persistent-cache docs). Checked on every backend so the cpu tests catch a pod spec without them.
def scratch_paths(workdir: str | None) -> list[Path]:
    temp = {os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")} - {None, ""}
    paths = [Path.cwd(), *map(Path, sorted(temp)), Path("/tmp"), Path("/var/tmp")]
    return list(dict.fromkeys(([Path(workdir)] if workdir else []) + paths))


def ensure_writable(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path):
                pass
        except OSError as error:
            raise PermissionError(f"{path} is not writable ({error.strerror}): the compile needs a writable "
                                  "working directory, temp dir and /var/tmp (mount emptyDirs there)") from None


def build_artifact(inputs: CompileInputs, weights: str, load_kwargs: dict, out: Path) -> None:
    import diffusers
    import torch
    from diffusers import StableDiffusionPipeline

    from . import backends

    progress(f"loading pipeline from {weights}")
    pipe = StableDiffusionPipeline.from_pretrained(weights, torch_dtype=torch.float32, **load_kwargs)
    scheduler = getattr(diffusers, inputs.scheduler).from_config(pipe.scheduler.config)
    traced_dir = out / "traced"
    traced_dir.mkdir(parents=True)
    for part, module in backends.part_wrappers(pipe, inputs).items():
        started = time.monotonic()
        example = backends.example_inputs(part, inputs)
        traced = backends.trace_for_backend(inputs.backend, part, module, example, inputs, out.parent / f"work-{part}")
        torch.jit.save(traced, str(traced_dir / f"{part}.pt"))
        progress(f"traced {part} for {inputs.backend} in {time.monotonic() - started:.1f}s")
    # Everything else needed to serve with no hub access.
    pipe.tokenizer.save_pretrained(out / "tokenizer")
    scheduler.save_pretrained(out / "scheduler")
    pipe.unet.save_config(out / "unet")
    pipe.vae.save_config(out / "vae")
    pipe.text_encoder.config.save_pretrained(out / "text_encoder")
    assert {p.stem for p in traced_dir.iterdir()} == set(TRACED_PARTS)


def write_archive(source: Path, archive: Path) -> dict:
    """Uncompressed tar (traced weights barely compress; plain tar streams fastest)."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                info = tar.gettarinfo(str(path), arcname=path.relative_to(source).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
    digest = hashlib.sha256()
    with open(archive, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return {"size": archive.stat().st_size, "sha256": digest.hexdigest()}


def package(inputs: CompileInputs, name: str, version: str, out: Path, archive: Path) -> dict:
    """Tar the artifact directory; returns its manifest (what sd21-stage verifies against)."""
    archive_info = write_archive(out, archive)
    return {
        "format_version": inputs.format_version,
        "model_name": name,
        "version": version,
        "compile_inputs": inputs.to_dict(),
        "files": describe_files(out),
        "archive": {"key": f"artifact-{archive_info['sha256'][:16]}.tar", **archive_info},
        "library_versions": library_versions(),
        "neuron_sdk": inputs.neuron_sdk,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class _UploadProgress:
    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.last = label, max(total, 1), 0, -10

    def __call__(self, count: int) -> None:
        self.done += count
        percent = int(100 * self.done / self.total)
        if percent >= self.last + 10:
            self.last = percent
            progress(f"{self.label}: {percent}% of {self.total} bytes")


def upload(client, bucket: str, name: str, version: str, archive: Path, manifest: dict) -> bool:
    """Data under a temporary key, copied to its final key; manifest last as the commit marker.

    Returns False when another compile committed this version first.
    """
    final_prefix = artifact_prefix(name, version)
    archive_key = final_prefix + manifest["archive"]["key"]
    tmp_key = upload_prefix(name, version, uuid.uuid4().hex) + ARCHIVE_NAME
    client.upload_file(str(archive), bucket, tmp_key,
                       Callback=_UploadProgress(f"upload s3://{bucket}/{tmp_key}", manifest["archive"]["size"]))
    progress(f"copy to s3://{bucket}/{archive_key}")
    client.copy({"Bucket": bucket, "Key": tmp_key}, bucket, archive_key)
    client.delete_object(Bucket=bucket, Key=tmp_key)
    try:
        # Only the first writer commits the version; never overwrite a good manifest.
        client.put_object(Bucket=bucket, Key=final_prefix + MANIFEST_NAME, IfNoneMatch="*",
                          Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
                          ContentType="application/json")
    except Exception as error:  # noqa: BLE001
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
        # Another compile committed first. Its archive may be this very key (same
        # bytes), so nothing under the final prefix is deleted: the compile role
        # may not delete there, and a finished artifact is never touched.
        progress(f"version {version} was committed by another compile; keeping its artifact")
        return False
    return True


def run(args: argparse.Namespace) -> int:
    try:
        inputs = CompileInputs.defaults(
            args.backend, model_id=args.model_id, model_revision=args.model_revision, neuron_sdk=args.neuron_sdk
        )
        if args.print_version:
            print(artifact_version(inputs))
            return 0
        if not args.bucket:
            return fail(f"no bucket: set {CompileEnv.var('bucket').name} or --bucket")
        name = validate_model_name(args.model_name)
        bucket = validate_bucket(args.bucket)
    except ValueError as error:
        return fail(str(error))
    image_sdk = args.env.image_neuron_sdk
    if inputs.backend == "neuron" and image_sdk and image_sdk != inputs.neuron_sdk:
        return fail(f"{CompileEnv.var('neuron_sdk').name}={inputs.neuron_sdk} but this image carries Neuron SDK "
                    f"{image_sdk}: the artifact version would name a compiler that did not build it")
    mismatch = inputs.compiler_env_mismatch(os.environ)
    if mismatch:
        return fail(compile_env_refusal(mismatch))
    version = artifact_version(inputs)
    if args.expected_version and args.expected_version != version:
        return fail(
            f"compile inputs hash to version {version} but {CompileEnv.var('model_version').name}="
            f"{args.expected_version}: "
            f"the deployment and this compile job disagree on model, revision, backend, SDK or compiler "
            f"settings ({inputs.canonical_json()})"
        )
    try:
        ensure_writable(scratch_paths(args.workdir))
    except PermissionError as error:
        return fail(str(error))
    prefix = artifact_prefix(name, version)
    client = s3.client()
    try:
        present = s3.object_exists(client, bucket, prefix + MANIFEST_NAME)
    except Exception as error:  # noqa: BLE001
        if s3.is_missing_credentials(error):
            return fail("no AWS credentials: the Pod Identity association of this ServiceAccount was not "
                        "effective when the pod started; delete the pod to retry", 6)
        raise
    if present:
        progress(f"artifact s3://{bucket}/{prefix} already present; nothing to do")
        return 0
    progress(f"compiling artifact version {version} for {inputs.backend} into s3://{bucket}/{prefix}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch_name:
        scratch = Path(scratch_name)
        try:
            weights, load_kwargs = fetch_weights(args.weights_source or inputs.model_id, inputs, scratch)
        except FileNotFoundError as error:
            return fail(str(error), 3)
        except WeightsMismatch as error:
            return fail(f"refusing to compile: {error}", 4)
        out = scratch / "artifact"
        build_artifact(inputs, weights, load_kwargs, out)
        manifest = package(inputs, name, version, out, scratch / ARCHIVE_NAME)
        progress(f"artifact: {len(manifest['files'])} files, {manifest['archive']['size']} bytes")
        if not upload(client, bucket, name, version, scratch / ARCHIVE_NAME, manifest):
            progress(f"another compile committed s3://{bucket}/{prefix} first; kept it")
            return 0
    progress(f"committed s3://{bucket}/{prefix}{MANIFEST_NAME}")
    return 0


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
