"""Model weights: a pinned hub revision, or a mirror of it in S3 with a sha256 manifest.

The production path mirrors the weights once (`sd21-mirror-weights`) into the model
bucket, so a compile never depends on the hub again; the compile Job then reads that
mirror (`weightsSource: s3://...`) and refuses any file that does not match the manifest.

    sd21-mirror-weights --dest s3://<bucket>/weights/<model id>/<revision>/

Exit codes: 0 mirrored (or already), 2 bad arguments, 3 source not found,
4 the destination holds a different mirror (nothing is overwritten), 1 unexpected.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import tempfile
from pathlib import Path

from . import s3
from .contract import WEIGHTS_MANIFEST, MirrorWeightsEnv
from .artifact import describe_files, sha256_file
from .env import fail, progress, read

MANIFEST = WEIGHTS_MANIFEST
# What StableDiffusionPipeline.from_pretrained reads in float32: the diffusers layout's
# configs, tokenizer and full-precision safetensors (not the .ckpt, .bin or fp16 variants).
INCLUDE = ("model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors")
EXCLUDE = ("*.fp16.*", "*non_ema*", "*.ckpt", "*.bin", "*.msgpack", "*.onnx")


class WeightsMismatch(Exception):
    """The weights found are not the ones the manifest (or the compile inputs) name."""


def wanted(path: str) -> bool:
    return (any(fnmatch.fnmatch(path, p) for p in INCLUDE)
            and not any(fnmatch.fnmatch(path, p) for p in EXCLUDE))


def build_manifest(directory: Path, model_id: str, revision: str) -> dict:
    files = [entry for entry in describe_files(directory) if wanted(entry["path"])]
    if not any(entry["path"] == "model_index.json" for entry in files):
        raise FileNotFoundError(f"{directory} is not a diffusers pipeline (no model_index.json)")
    return {"model_id": model_id, "revision": revision, "files": files}


def download_from_hub(model_id: str, revision: str, target: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(repo_id=model_id, revision=revision, local_dir=target,
                                      allow_patterns=list(INCLUDE), ignore_patterns=list(EXCLUDE)))
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise FileNotFoundError(f"{model_id}@{revision} is not on the hub ({type(error).__name__}): "
                                "it may have been withdrawn; mirror it from a copy with --from-dir") from None


def read_manifest(client, bucket: str, prefix: str) -> dict | None:
    key = prefix + MANIFEST
    if not s3.with_retries(lambda: s3.object_exists(client, bucket, key), "weights manifest lookup"):
        return None
    body = s3.with_retries(lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(), "weights manifest")
    try:
        manifest = json.loads(body)
        manifest["model_id"], manifest["revision"], manifest["files"]  # noqa: B018 - shape check
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsMismatch(f"s3://{bucket}/{key} is not a weights manifest ({error})") from None
    return manifest


def fetch_mirror(source: str, model_id: str, revision: str, target: Path) -> Path:
    """Download a mirror into target, verifying every file against its manifest."""
    bucket, prefix = s3.parse_url(source.rstrip("/") + "/")
    client = s3.client()
    manifest = read_manifest(client, bucket, prefix)
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} under {source}: mirror the weights first with "
                                f"sd21-mirror-weights --dest {source}")
    if (manifest["model_id"], manifest["revision"]) != (model_id, revision):
        raise WeightsMismatch(f"{source} mirrors {manifest['model_id']}@{manifest['revision']}, "
                              f"but this compile is for {model_id}@{revision}")
    for entry in manifest["files"]:
        destination = target / entry["path"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        key = prefix + entry["path"]
        try:
            s3.with_retries(lambda: client.download_file(bucket, key, str(destination)), key)
        except Exception as error:  # noqa: BLE001
            if s3.is_not_found(error) or s3.is_access_denied(error):
                raise WeightsMismatch(f"s3://{bucket}/{key} is listed in the manifest but cannot be read "
                                      f"({s3.error_code(error)})") from None
            raise
        size, digest = destination.stat().st_size, sha256_file(destination)
        if (size, digest) != (entry["size"], entry["sha256"]):
            raise WeightsMismatch(f"s3://{bucket}/{key} does not match the weights manifest "
                                  f"(size {size}, sha256 {digest[:12]}…; expected {entry['size']}, "
                                  f"{entry['sha256'][:12]}…)")
    progress(f"verified {len(manifest['files'])} weight files of {model_id}@{revision} from {source}")
    return target


def upload_mirror(directory: Path, manifest: dict, dest: str) -> bool:
    """Upload files, then the manifest last (only if none is there). False if the same mirror exists."""
    bucket, prefix = s3.parse_url(dest.rstrip("/") + "/")
    client = s3.client()
    existing = read_manifest(client, bucket, prefix)
    if existing is not None:
        if existing == manifest:
            return False
        raise WeightsMismatch(f"{dest} already holds a different mirror ({existing['model_id']}@"
                              f"{existing['revision']}); nothing was overwritten: choose another --dest")
    for entry in manifest["files"]:
        key = prefix + entry["path"]
        s3.with_retries(lambda: client.upload_file(str(directory / entry["path"]), bucket, key), key)
        progress(f"uploaded s3://{bucket}/{key} ({entry['size']} bytes)")
    client.put_object(Bucket=bucket, Key=prefix + MANIFEST, IfNoneMatch="*", ContentType="application/json",
                      Body=json.dumps(manifest, indent=2, sort_keys=True).encode())
    return True


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sd21-mirror-weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    env = read(MirrorWeightsEnv)
    parser.add_argument("--model-id", default=env.model_id)
    parser.add_argument("--revision", default=env.model_revision,
                        help="the 40-hex hub commit to mirror")
    parser.add_argument("--dest", required=True, help="s3://bucket/prefix/ of the mirror (the weightsSource setting)")
    parser.add_argument("--from-dir", help="mirror a local copy of that revision instead of downloading it")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        s3.parse_url(args.dest)
    except ValueError as error:
        return fail(str(error))
    with tempfile.TemporaryDirectory() as scratch:
        try:
            if args.from_dir:
                directory = Path(args.from_dir)
                if not (directory / "model_index.json").is_file():
                    return fail(f"{directory} is not a diffusers pipeline directory (no model_index.json)", 3)
            else:
                progress(f"downloading {args.model_id}@{args.revision} from the hub")
                directory = download_from_hub(args.model_id, args.revision, Path(scratch))
            manifest = build_manifest(directory, args.model_id, args.revision)
            if not upload_mirror(directory, manifest, args.dest):
                progress(f"{args.dest} already mirrors {args.model_id}@{args.revision}; nothing to do")
                return 0
        except FileNotFoundError as error:
            return fail(str(error), 3)
        except WeightsMismatch as error:
            return fail(str(error), 4)
        except Exception as error:  # noqa: BLE001 - one line, not a traceback
            return fail(f"mirroring failed: {type(error).__name__}: {error}", 1)
    progress(f"mirrored {len(manifest['files'])} files to {args.dest} with {MANIFEST}; "
             f"set weightsSource to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
