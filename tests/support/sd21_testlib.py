"""Helpers shared by the model image tests (unique module name: no clash with other conftests)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
MODEL_IMAGE = ROOT / "model_image"
if str(MODEL_IMAGE) not in sys.path:
    sys.path.insert(0, str(MODEL_IMAGE))

from tools.dev.localstack import free_port, serving  # noqa: E402,F401 - shared with the tests

from tests.conftest import TEST_BUCKET as BUCKET  # noqa: E402 - one bucket name for every test
MODEL_NAME = "tiny"


def wait_for(url: str, timeout: float = 60.0, status: int = 200) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {timeout}s")


def compile_args(weights: Path, *extra: str) -> list[str]:
    return ["--backend", "cpu", "--bucket", BUCKET, "--model-name", MODEL_NAME,
            "--weights-source", str(weights), "--model-id", "local/tiny-sd21", "--model-revision", "test", *extra]


def subprocess_env(s3_env) -> dict:
    env = {**os.environ, **s3_env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MODEL_IMAGE), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_stage(s3_env, dest: Path, version: str, name: str = MODEL_NAME, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "sd21.stage", "--backend", "cpu", "--bucket", BUCKET, "--model-name", name, "--version", version,
         "--dest", str(dest), "--workers", "4", "--chunk-mib", "1"],
        env=subprocess_env(s3_env), capture_output=True, text=True, timeout=timeout,
    )


class ThreadedServer:
    """The real app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, model_dir: Path, version: str, queue_size: int, with_ui: bool):
        import uvicorn

        from sd21.server import create_app
        from sd21.service import GenerationService, ServiceSettings

        self.service = GenerationService(ServiceSettings(
            backend="cpu", model_dir=model_dir, model_version=version, queue_size=queue_size,
            request_timeout_s=120, warmup_steps=1,
        ))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(self.service, with_ui=with_ui)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.service.load_in_background()
        self.thread.start()
        wait_for(self.url + "/ready", timeout=120)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.service.shutdown()
