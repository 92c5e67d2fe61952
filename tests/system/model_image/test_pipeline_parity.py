"""The served pipeline computes what diffusers' StableDiffusionPipeline computes for the
same weights, seed and steps (within 1/255 per pixel), guidance <= 1 included."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def reference(tiny_weights, staged_dir, artifact_version):
    import torch
    from diffusers import StableDiffusionPipeline
    from sd21.pipeline import TracedPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_weights, torch_dtype=torch.float32)
    # The scheduler the artifact serves with (compile builds it from the weights' config).
    scheduler_dir = staged_dir / artifact_version / "scheduler"
    pipe.scheduler = pipe.scheduler.__class__.from_pretrained(scheduler_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe, TracedPipeline(staged_dir / artifact_version, "cpu")


@pytest.mark.parametrize("guidance", [7.5, 1.0, 0.0])
def test_same_image_as_diffusers(reference, guidance):
    import torch
    from sd21.pipeline import GenerationParams

    pipe, ours = reference
    prompt, negative, steps, seed = "a lighthouse at dusk", "blurry", 3, 11
    expected = pipe(prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
                    generator=torch.Generator().manual_seed(seed), output_type="np").images[0]
    expected = (expected * 255).round().astype(np.int16)
    image = ours.generate(GenerationParams(prompt=prompt, negative_prompt=negative, steps=steps,
                                           guidance_scale=guidance, seed=seed))
    actual = np.asarray(image).astype(np.int16)
    assert actual.shape == expected.shape == (512, 512, 3)
    assert np.abs(actual - expected).max() <= 1


def test_guidance_at_or_below_one_ignores_the_negative_prompt(reference):
    """No classifier-free guidance: the prompt's prediction alone, as diffusers does."""
    from sd21.pipeline import GenerationParams

    _, ours = reference
    images = [np.asarray(ours.generate(GenerationParams(prompt="a red cube", negative_prompt=negative, steps=2,
                                                        guidance_scale=1.0, seed=3)))
              for negative in ("", "green, blurry")]
    assert np.array_equal(*images)
