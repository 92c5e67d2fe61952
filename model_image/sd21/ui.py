"""Gradio UI for people, mounted on the API app; it goes through the same queue.

It must not fill the pod's /tmp (an emptyDir with a sizeLimit: past it the kubelet evicts
the pod). What Gradio 6.31.0 writes there (read in .venv/.../gradio): every image the UI
shows is saved under GRADIO_TEMP_DIR (default <tmp>/gradio; utils.get_upload_folder,
processing_utils.save_pil_to_cache, one <sha256>/image.png folder each) and is kept forever
unless the Blocks has delete_cache=(frequency, age) (blocks.py; route_utils
delete_files_on_schedule removes tracked files older than age every frequency seconds,
but leaves their folders); and its upload routes (routes.py POST /gradio_api/upload,
/gradio_api/process_recording, and any multipart body) store whatever is sent, up to
max_file_size (None: unlimited). So here: the cache is deleted on a schedule, swept of its
empty folders and held under a byte budget, and no upload is taken (the UI has no file input).
"""
from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

from .api import MAX_PROMPT_CHARS, is_visible
from .contract import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS, ServerEnv
from .errors import error_response
from .service import GenerationService, Rejected

MAX_SEED = 2**32 - 1  # as the API's seed
# The cache is deleted on a schedule (sd21.contract.ServerEnv: why its default age is
# enough); the byte budget is the bound whatever the pace.
CACHE_MAX_BYTES = 256 << 20
UPLOAD_PATHS = ("/gradio_api/upload", "/gradio_api/process_recording")


def build_blocks(service: GenerationService):
    import gradio as gr

    from .pipeline import GenerationParams

    async def run(prompt: str, negative_prompt: str, steps: float, guidance: float, seed: float):
        if not prompt or not is_visible(prompt):
            raise gr.Error("Please enter a prompt.")
        if seed is not None and not -1 <= seed <= MAX_SEED:
            raise gr.Error(f"The seed must be between 0 and {MAX_SEED}, or -1 for a random one.")
        seed_value = int(seed) if seed is not None and seed >= 0 else random.randrange(MAX_SEED + 1)
        params = GenerationParams.of({"prompt": prompt[:MAX_PROMPT_CHARS],
                                      "negative_prompt": (negative_prompt or "")[:MAX_PROMPT_CHARS],
                                      "steps": int(steps), "guidance_scale": guidance}, seed_value)
        try:
            return await service.generate(params), f"seed {seed_value}"
        except Rejected as rejection:
            raise gr.Error(rejection.message)

    sweep_s, max_age_s = _cache_schedule()
    with gr.Blocks(title="Stable Diffusion 2.1 (512x512)", delete_cache=(sweep_s, max_age_s)) as blocks:
        gr.Markdown("# Stable Diffusion 2.1-base, 512x512")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", elem_id="prompt", max_length=MAX_PROMPT_CHARS)
                negative = gr.Textbox(label="Negative prompt", elem_id="negative", max_length=MAX_PROMPT_CHARS)
                steps = gr.Slider(1, 100, value=DEFAULT_STEPS, step=1, label="Steps", elem_id="steps")
                guidance = gr.Slider(0, 30, value=DEFAULT_GUIDANCE_SCALE, step=0.5, label="Guidance scale")
                seed = gr.Number(value=-1, precision=0, minimum=-1, maximum=MAX_SEED, label="Seed (-1: random)")
                button = gr.Button("Generate", elem_id="generate", variant="primary")
            with gr.Column():
                image = gr.Image(label="Image", type="pil", elem_id="result", format="png")
                info = gr.Textbox(label="Info", elem_id="info", interactive=False)
        button.click(run, [prompt, negative, steps, guidance, seed], [image, info], concurrency_limit=None)
    return blocks


def _cache_schedule() -> tuple[int, int]:
    """(sweep every, delete older than) in seconds; the environment may shorten them (tests)."""
    return (ServerEnv.var("ui_cache_sweep_s").read(os.environ), ServerEnv.var("ui_cache_max_age_s").read(os.environ))


def mount_ui(app, service: GenerationService, path: str):
    import gradio as gr
    from starlette.routing import Mount

    blocks = build_blocks(service)
    # max_file_size=0: Gradio's multipart parser refuses any file byte (route_utils.py
    # GradioMultiPartParser); UiGuard refuses the uploads before they get there anyway.
    app = gr.mount_gradio_app(app, blocks, path=path, max_file_size=0)
    count = service.metrics.errors.labels
    for route in app.router.routes:
        if isinstance(route, Mount) and route.path == path.rstrip("/"):
            route.app = UiGuard(route.app, lambda kind: count(kind).inc())
    CacheSweeper(Path(blocks.GRADIO_CACHE), _cache_schedule()[0]).start()
    return app


class UiGuard:
    """Around the mounted Gradio app: uploads refused, and a body that BodyLimit stopped
    answered as the API answers it (Gradio's FastAPI would say 400 {"detail": ...})."""

    def __init__(self, app, count):
        self.app, self.count = app, count

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if _is_upload(scope):
            self.count("not_found")
            refusal = error_response(404, "not_found", "the UI takes no uploads")
            return await refusal(scope, receive, send)
        from .request_checks import TOO_LARGE, too_large

        replaced = False

        async def send_or_413(message):
            nonlocal replaced
            if message["type"] == "http.response.start" and scope.get(TOO_LARGE):
                replaced = True
                self.count("request_too_large")
                return await too_large()(scope, receive, send)
            if not replaced:  # Gradio's own answer to the failed read is dropped
                await send(message)

        await self.app(scope, receive, send_or_413)


def _is_upload(scope) -> bool:
    content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
    return scope["path"].rstrip("/").endswith(UPLOAD_PATHS) or content_type.lower().startswith(b"multipart/")


class CacheSweeper(threading.Thread):
    """Every `every_s`: the cache held under its byte budget, and the empty folders that
    Gradio's own deletion leaves behind removed (each takes a block of the emptyDir)."""

    def __init__(self, folder: Path, every_s: float, max_bytes: int = CACHE_MAX_BYTES):
        super().__init__(name="ui-cache-sweeper", daemon=True)
        self.folder, self.every_s, self.max_bytes = folder, every_s, max_bytes

    def run(self) -> None:
        while True:
            time.sleep(self.every_s)
            try:
                sweep_cache(self.folder, self.max_bytes, min_age_s=self.every_s)
            except OSError:
                pass  # the next sweep tries again


def sweep_cache(folder: Path, max_bytes: int, min_age_s: float) -> None:
    """Oldest files first until at most max_bytes remain; then empty folders older than
    min_age_s (a younger one may be about to get its file: save_pil_to_cache makes the folder first)."""
    files = []
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        except FileNotFoundError:
            continue
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
    cutoff = time.time() - min_age_s
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            if path.stat().st_mtime < cutoff:
                path.rmdir()  # only if empty
        except OSError:
            continue
