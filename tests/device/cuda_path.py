"""The `cuda` backend, run for real on a GPU machine (never in CI: no GPU there).

    make cuda-check     # or: PYTHONPATH=model_image python3 tests/device/cuda_path.py

1. The same code path as production, on tiny random weights: sd21-compile
   --backend cuda -> S3 (moto, in-process) -> sd21-stage -> GenerationService +
   the HTTP app -> a 512x512 PNG; the same seed on cpu, compared pixel by pixel.
2. A figure: latency of an SD2.1-base-shaped UNet (random weights, float16,
   traced through backends.trace_for_backend) per denoising step and per 25/50-step
   image, the CFG pair split as load_traced does.

Prints what it measured; exits non-zero on any failure. Needs torch with CUDA,
diffusers, transformers, fastapi, uvicorn, httpx and moto.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

# stable-diffusion-2-1-base's unet/config.json (the values also in diffusers'
# scripts/convert_original_stable_diffusion_to_diffusers.py for v2 "base" configs).
SD21_BASE_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
)


def say(message: str) -> None:
    print(f"[cuda-path] {message}", flush=True)


def tiny_end_to_end(workdir: Path) -> None:
    import httpx
    import numpy as np
    from PIL import Image

    from tools.dev import localstack
    from sd21.pipeline import GenerationParams, TracedPipeline
    from sd21.server import API_PATH, create_app
    from sd21.service import GenerationService, ServiceSettings

    model_dirs = {}
    for backend in ("cuda", "cpu"):
        started = time.monotonic()
        model_dirs[backend] = localstack.compile_and_stage(workdir, backend)
        say(f"{backend}: compile + stage of the tiny weights in {time.monotonic() - started:.1f}s "
            f"(version {model_dirs[backend][1]})")
    cuda_dir, cuda_version = model_dirs["cuda"]
    service = GenerationService(ServiceSettings(backend="cuda", model_dir=cuda_dir, model_version=cuda_version,
                                                queue_size=4, request_timeout_s=60, drain_grace_s=5))
    service.load_in_background().join(timeout=300)
    if not service.warm:
        raise SystemExit(f"cuda service did not get ready: {service.load_error}")
    body = {"prompt": "a lighthouse at dusk", "seed": 7, "steps": 25, "guidance_scale": 7.5, "response_format": "png"}
    with localstack.serving(create_app(service, with_ui=False)) as url:
        assert httpx.get(f"{url}/ready").status_code == 200
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            response = httpx.post(f"{url}{API_PATH}", json=body, timeout=60)
            latencies.append(time.monotonic() - started)
            if response.status_code != 200:
                raise SystemExit(f"generation answered {response.status_code}: {response.text}")
    service.shutdown()
    image = Image.open(io.BytesIO(response.content))
    if image.size != (512, 512) or image.mode != "RGB":
        raise SystemExit(f"expected a 512x512 RGB PNG, got {image.size} {image.mode}")
    say(f"cuda HTTP round trip, tiny weights, 25 steps: {', '.join(f'{s:.3f}' for s in latencies)} s")
    cpu_image = TracedPipeline(model_dirs["cpu"][0] / model_dirs["cpu"][1], "cpu").generate(
        GenerationParams(prompt=body["prompt"], seed=7, steps=25, guidance_scale=7.5))
    difference = np.abs(np.asarray(image, dtype=np.int16) - np.asarray(cpu_image, dtype=np.int16))
    say(f"same seed on cuda (float16 UNet) vs cpu (float32): mean |diff| {difference.mean():.2f}/255, "
        f"max {difference.max()}, pixels off by > 8: {(difference > 8).mean():.2%}")
    if difference.mean() > 8:
        raise SystemExit("cuda and cpu images of the same seed differ too much: the cuda path is wrong")


def full_size_unet_latency() -> None:
    import torch
    from diffusers import UNet2DConditionModel

    from sd21 import backends
    from sd21.artifact import CompileInputs

    inputs = CompileInputs.defaults("cuda")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD21_BASE_UNET)
    parameters = sum(p.numel() for p in unet.parameters())
    wrapper = backends.UNetWrapper(unet).to(backends.TORCH_DTYPES[inputs.part_dtype("unet")]).eval()
    example = backends.example_inputs("unet", inputs)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.monotonic()
        traced = backends.trace_for_backend("cuda", "unet", wrapper, example, inputs, Path(scratch))
        path = Path(scratch) / "unet.pt"
        torch.jit.save(traced, str(path))
        unet_callable = backends.load_traced("cuda", path, "unet")
        say(f"SD2.1-base-shaped UNet ({parameters / 1e6:.0f}M parameters) traced and loaded in "
            f"{time.monotonic() - started:.1f}s")
    sample = torch.randn((2, *inputs.latent_shape[1:]), dtype=torch.float16, device="cuda")
    context = torch.randn((2, *inputs.context_shape[1:]), dtype=torch.float16, device="cuda")
    timestep = torch.tensor([999.0, 999.0], device="cuda")
    with torch.no_grad():
        for _ in range(5):
            unet_callable(sample, timestep, context)
        torch.cuda.synchronize()
        step_times = []
        for _ in range(3):
            started = time.monotonic()
            for _ in range(20):
                unet_callable(sample, timestep, context)
            torch.cuda.synchronize()
            step_times.append((time.monotonic() - started) / 20)
    step = min(step_times)
    say(f"UNet step (CFG pair, batch 1 x 2 as served): {step * 1000:.1f} ms (best of 3 x 20; "
        f"all {', '.join(f'{s * 1000:.1f}' for s in step_times)} ms) -> 25 steps {25 * step:.2f}s, "
        f"50 steps {50 * step:.2f}s of UNet time per image; peak GPU memory "
        f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def main() -> int:
    import torch

    say(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available {torch.cuda.is_available()}")
    from sd21.backends import check_device

    say(f"accelerator: {check_device('cuda')}")
    from moto import mock_aws

    os.environ.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    from tools.dev import localstack

    with mock_aws(), tempfile.TemporaryDirectory(prefix="sd21-cuda-") as workdir:
        import boto3

        boto3.client("s3").create_bucket(Bucket=localstack.BUCKET)
        tiny_end_to_end(Path(workdir))
    full_size_unet_latency()
    say("cuda path OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
