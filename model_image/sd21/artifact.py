"""Artifact identity: compile inputs, version hash, S3 layout, manifest helpers.

Stdlib only: the CDK app imports this module at synth time to compute the
version that the compile Job and the Deployment must agree on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

# Bump when the artifact layout or the traced wrappers change incompatibly.
FORMAT_VERSION = 1

BACKENDS = ("neuron", "cuda", "cpu")
DTYPES = ("bfloat16", "float16", "float32")
DEFAULT_DTYPE = {"neuron": "bfloat16", "cuda": "float16", "cpu": "float32"}

DEFAULT_MODEL_ID = "stabilityai/stable-diffusion-2-1-base"
# Pinned hub commit of stable-diffusion-2-1-base; a settings value overrides it.
DEFAULT_MODEL_REVISION = "5ede9e4bf3e3fd1cb0ef2f7a3fff13ee514fdf06"
DEFAULT_NEURON_SDK = "2.31.1"
DEFAULT_SCHEDULER = "DPMSolverMultistepScheduler"

# Compiler options of the Neuron SD2.1-512 sample, per traced part.
NEURON_COMPILER_ARGS = {
    "text_encoder": ("--enable-fast-loading-neuron-binaries",),
    "unet": ("--model-type=unet-inference", "--enable-fast-loading-neuron-binaries"),
    "vae_decoder": ("--model-type=unet-inference", "--enable-fast-loading-neuron-binaries"),
    "vae_post_quant_conv": ("--enable-fast-loading-neuron-binaries",),
}

ARCHIVE_NAME = "artifact.tar"
MANIFEST_NAME = "manifest.json"
TRACED_PARTS = ("text_encoder", "unet", "vae_decoder", "vae_post_quant_conv")

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VERSION_RE = re.compile(r"^[0-9a-f]{16}$")
_SDK_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")


def validate_model_name(name: str) -> str:
    """A model name becomes an S3 path segment and a Kubernetes label value."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid model name {name!r}: use 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ValueError(f"invalid artifact version {version!r}: expected 16 lowercase hex characters")
    return version


def validate_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket):
        raise ValueError(f"invalid S3 bucket name {bucket!r}")
    return bucket


@dataclasses.dataclass(frozen=True)
class CompileInputs:
    """Everything that determines the bytes of a compiled artifact."""

    model_id: str = DEFAULT_MODEL_ID
    model_revision: str = DEFAULT_MODEL_REVISION
    backend: str = "neuron"
    neuron_sdk: str = DEFAULT_NEURON_SDK
    dtype: str = "bfloat16"
    scheduler: str = DEFAULT_SCHEDULER
    image_size: int = 512
    latent_shape: tuple[int, ...] = (1, 4, 64, 64)
    context_shape: tuple[int, ...] = (1, 77, 1024)
    compiler_args: tuple[tuple[str, tuple[str, ...]], ...] = tuple(NEURON_COMPILER_ARGS.items())
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"invalid backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"invalid dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}")
        if not self.model_id or not self.model_revision:
            raise ValueError("model_id and model_revision must be non-empty")
        if not _SDK_RE.match(self.neuron_sdk):
            raise ValueError(f"invalid Neuron SDK version {self.neuron_sdk!r}: expected e.g. '2.31.1'")
        if self.image_size != 512 or self.latent_shape[2:] != (self.image_size // 8,) * 2:
            raise ValueError("only 512x512 images (64x64 latents) are supported")

    @classmethod
    def defaults(cls, backend: str = "neuron", **overrides: Any) -> "CompileInputs":
        """Defaults for a backend: neuron bf16, cuda fp16, cpu fp32."""
        if backend not in BACKENDS:
            raise ValueError(f"invalid backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        overrides.setdefault("dtype", DEFAULT_DTYPE[backend])
        return cls(backend=backend, **overrides)

    def compiler_args_for(self, part: str) -> tuple[str, ...]:
        return dict(self.compiler_args).get(part, ())

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["latent_shape"] = list(self.latent_shape)
        data["context_shape"] = list(self.context_shape)
        data["compiler_args"] = {part: list(args) for part, args in self.compiler_args}
        return data

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def artifact_version(inputs: CompileInputs) -> str:
    """Short stable hash of the compile inputs: new inputs, new artifact."""
    return hashlib.sha256(inputs.canonical_json().encode()).hexdigest()[:16]


def artifact_prefix(model_name: str, version: str) -> str:
    return f"models/{validate_model_name(model_name)}/{validate_version(version)}/"


def upload_prefix(model_name: str, version: str, upload_id: str) -> str:
    """Temporary key space for an upload in progress, outside the final prefix."""
    return f"models/{validate_model_name(model_name)}/.uploads/{validate_version(version)}/{upload_id}/"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(root: Path) -> list[dict[str, Any]]:
    """Relative path, size and sha256 of every regular file under root, sorted."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST_NAME:
            continue
        entries.append({"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return entries
