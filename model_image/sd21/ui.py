"""Gradio UI for people, mounted on the API app; it goes through the same queue."""
from __future__ import annotations

import random

from .service import GenerationService, Rejected


def build_blocks(service: GenerationService):
    import gradio as gr

    from .pipeline import GenerationParams

    async def run(prompt: str, negative_prompt: str, steps: float, guidance: float, seed: float):
        if not prompt or not prompt.strip():
            raise gr.Error("Please enter a prompt.")
        seed_value = int(seed) if seed is not None and seed >= 0 else random.randrange(2**32)
        params = GenerationParams(prompt=prompt[:1000], negative_prompt=(negative_prompt or "")[:1000],
                                  steps=int(steps), guidance_scale=float(guidance), seed=seed_value)
        try:
            return await service.generate(params), f"seed {seed_value}"
        except Rejected as rejection:
            raise gr.Error(rejection.message)

    with gr.Blocks(title="Stable Diffusion 2.1 (512x512)") as blocks:
        gr.Markdown("# Stable Diffusion 2.1-base, 512x512")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", elem_id="prompt", max_length=1000)
                negative = gr.Textbox(label="Negative prompt", elem_id="negative", max_length=1000)
                steps = gr.Slider(1, 100, value=25, step=1, label="Steps", elem_id="steps")
                guidance = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance scale")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                button = gr.Button("Generate", elem_id="generate", variant="primary")
            with gr.Column():
                image = gr.Image(label="Image", type="pil", elem_id="result", format="png")
                info = gr.Textbox(label="Info", elem_id="info", interactive=False)
        button.click(run, [prompt, negative, steps, guidance, seed], [image, info], concurrency_limit=None)
    return blocks


def mount_ui(app, service: GenerationService, path: str):
    import gradio as gr

    return gr.mount_gradio_app(app, build_blocks(service), path=path)
