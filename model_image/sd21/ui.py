"""Gradio UI for people, mounted on the API app; it goes through the same queue."""
from __future__ import annotations

import random

from .api import MAX_PROMPT_CHARS, is_visible
from .service import GenerationService, Rejected

MAX_SEED = 2**32 - 1  # as the API's seed


def build_blocks(service: GenerationService):
    import gradio as gr

    from .pipeline import GenerationParams

    async def run(prompt: str, negative_prompt: str, steps: float, guidance: float, seed: float):
        if not prompt or not is_visible(prompt):
            raise gr.Error("Please enter a prompt.")
        if seed is not None and not -1 <= seed <= MAX_SEED:
            raise gr.Error(f"The seed must be between 0 and {MAX_SEED}, or -1 for a random one.")
        seed_value = int(seed) if seed is not None and seed >= 0 else random.randrange(MAX_SEED + 1)
        params = GenerationParams(prompt=prompt[:MAX_PROMPT_CHARS],
                                  negative_prompt=(negative_prompt or "")[:MAX_PROMPT_CHARS],
                                  steps=int(steps), guidance_scale=float(guidance), seed=seed_value)
        try:
            return await service.generate(params), f"seed {seed_value}"
        except Rejected as rejection:
            raise gr.Error(rejection.message)

    with gr.Blocks(title="Stable Diffusion 2.1 (512x512)") as blocks:
        gr.Markdown("# Stable Diffusion 2.1-base, 512x512")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", elem_id="prompt", max_length=MAX_PROMPT_CHARS)
                negative = gr.Textbox(label="Negative prompt", elem_id="negative", max_length=MAX_PROMPT_CHARS)
                steps = gr.Slider(1, 100, value=25, step=1, label="Steps", elem_id="steps")
                guidance = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance scale")
                seed = gr.Number(value=-1, precision=0, minimum=-1, maximum=MAX_SEED, label="Seed (-1: random)")
                button = gr.Button("Generate", elem_id="generate", variant="primary")
            with gr.Column():
                image = gr.Image(label="Image", type="pil", elem_id="result", format="png")
                info = gr.Textbox(label="Info", elem_id="info", interactive=False)
        button.click(run, [prompt, negative, steps, guidance, seed], [image, info], concurrency_limit=None)
    return blocks


def mount_ui(app, service: GenerationService, path: str):
    import gradio as gr

    return gr.mount_gradio_app(app, build_blocks(service), path=path)
