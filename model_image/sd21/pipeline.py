"""Generate images from a staged artifact directory only (no hub, no weights).

A plain classifier-free-guidance loop over the traced parts: tokenizer ->
text encoder -> scheduler + UNet (CFG pair as one batch of 2) ->
post_quant_conv -> VAE decoder -> PNG-ready PIL image. It computes what
diffusers' StableDiffusionPipeline computes for the same weights, seed and
steps (tests/system/model_image/test_pipeline_parity.py), guidance <= 1 included.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from . import backends, faults
from .artifact import MANIFEST_NAME, TRACED_PARTS
from .contract import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS


class GenerationCancelled(Exception):
    """Raised between denoising steps when the caller no longer wants the image."""


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    negative_prompt: str = ""
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    seed: int = 0

    @classmethod
    def of(cls, request: Mapping[str, Any], seed: int) -> "GenerationParams":
        """A generation request's parameters (the API's fields, as validated, or as a job stored
        them): what it leaves out takes the API's defaults; the seed is the one chosen for it."""
        return cls(prompt=request["prompt"], negative_prompt=request.get("negative_prompt", ""),
                   steps=request.get("steps", DEFAULT_STEPS),
                   guidance_scale=float(request.get("guidance_scale", DEFAULT_GUIDANCE_SCALE)), seed=seed)


class TracedPipeline:
    def __init__(self, model_dir: Path, backend: str):
        import diffusers
        from transformers import CLIPTokenizer

        self.model_dir = Path(model_dir)
        self.backend = backend
        self.manifest = json.loads((self.model_dir / MANIFEST_NAME).read_text())
        inputs = self.manifest["compile_inputs"]
        self.dtype = backends.TORCH_DTYPES[inputs["dtype"]]  # the UNet's
        self.vae_dtype = backends.TORCH_DTYPES[inputs.get("vae_decoder_dtype", inputs["dtype"])]
        self.latent_shape = tuple(inputs["latent_shape"])
        self.device = backends.device_for(backend)
        self.tokenizer = CLIPTokenizer.from_pretrained(self.model_dir / "tokenizer")
        scheduler_config = json.loads((self.model_dir / "scheduler" / "scheduler_config.json").read_text())
        scheduler_cls = getattr(diffusers, scheduler_config["_class_name"])
        self.scheduler_config = scheduler_cls.load_config(self.model_dir / "scheduler")
        self.scheduler_cls = scheduler_cls
        vae_config = json.loads((self.model_dir / "vae" / "config.json").read_text())
        self.vae_scaling_factor = float(vae_config.get("scaling_factor", 0.18215))
        self.parts = {
            part: backends.load_traced(backend, self.model_dir / "traced" / f"{part}.pt", part)
            for part in TRACED_PARTS
        }
        self.parts = faults.inject(backend, self.parts, last_part="vae_decoder")
        # Schedulers keep per-run state: one generation at a time per pipeline.
        self._lock = threading.Lock()

    def _encode(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return torch.cat([self.parts["text_encoder"](ids[i : i + 1].to(self.device)) for i in range(len(texts))])

    @torch.no_grad()
    def generate(self, params: GenerationParams, should_stop: Optional[Callable[[], bool]] = None):
        from PIL import Image

        with self._lock:
            scheduler = self.scheduler_cls.from_config(self.scheduler_config)
            scheduler.set_timesteps(params.steps)
            # As diffusers: guidance only above 1; at or below it the prompt's prediction alone.
            # The UNet still runs a pair (one sample per NeuronCore), the prompt twice.
            guided = params.guidance_scale > 1
            context = self._encode([params.negative_prompt, params.prompt] if guided else [params.prompt])
            context = (context if guided else context.repeat(2, 1, 1)).to(self.dtype)
            generator = torch.Generator().manual_seed(params.seed)
            latents = torch.randn(self.latent_shape, generator=generator, dtype=torch.float32)
            latents = (latents * scheduler.init_noise_sigma).to(self.device)
            for timestep in scheduler.timesteps:
                if should_stop is not None and should_stop():
                    raise GenerationCancelled()
                model_input = scheduler.scale_model_input(torch.cat([latents] * 2), timestep)
                t = timestep.to(torch.float32).reshape(1).expand(2).to(self.device)
                noise = self.parts["unet"](model_input.to(self.dtype), t, context).float()
                uncond, cond = noise.chunk(2)
                noise = uncond + params.guidance_scale * (cond - uncond) if guided else cond
                latents = scheduler.step(noise, timestep, latents, return_dict=False)[0]
            latents = self.parts["vae_post_quant_conv"](latents.float() / self.vae_scaling_factor)
            image = self.parts["vae_decoder"](latents.to(self.vae_dtype)).float()
        pixels = ((image[0] / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
        return Image.fromarray(pixels.cpu().numpy())
