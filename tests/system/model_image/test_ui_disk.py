"""The UI cannot fill the pod's /tmp (a 2 GiB emptyDir; past it the kubelet evicts the pod):
Gradio's cache of generated images is deleted on a schedule and kept under a byte budget,
its upload routes take nothing (the UI has no file inputs), and a body over the limit on a
UI route is the API's 413 in the error envelope. Real app, real uvicorn on loopback."""
from __future__ import annotations

import json
import os
import time

import httpx
import pytest
from PIL import Image

from sd21.headers import MAX_BODY_BYTES
from tools.dev.localstack import serving
from sd21.server import create_app
from sd21.service import GenerationService, ServiceSettings


class BlankDevice:
    def generate(self, params, should_stop=None):
        return Image.new("RGB", (512, 512), (params.seed % 256, 0, 0))  # one file per seed


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """Gradio reads GRADIO_TEMP_DIR when a Blocks is made (gradio/utils.py get_upload_folder)."""
    folder = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


@pytest.fixture
def ui_url(cache_dir, monkeypatch):
    monkeypatch.setenv("SD21_UI_CACHE_SWEEP_S", "1")
    monkeypatch.setenv("SD21_UI_CACHE_MAX_AGE_S", "2")
    service = GenerationService(ServiceSettings(queue_size=4), pipeline=BlankDevice())
    service.load_in_background().join(timeout=30)
    try:
        with serving(create_app(service, with_ui=True)) as url:
            yield url
    finally:
        service.shutdown()


def files_in(folder) -> list:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def in_envelope(response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == kind, response.text


def test_the_ui_upload_routes_take_nothing_and_store_nothing(ui_url, cache_dir):
    for attempt in range(30):  # the finding: 30 uploads of < 1 MiB added 26 MB to /tmp
        upload = httpx.post(ui_url + "/ui/gradio_api/upload", timeout=30,
                            files={"files": (f"f{attempt}.bin", os.urandom(100_000))})
        in_envelope(upload, 404, "not_found")
    recording = httpx.post(ui_url + "/ui/gradio_api/process_recording", timeout=30,
                           files={"video": ("v.webm", os.urandom(1000))})
    in_envelope(recording, 404, "not_found")
    assert files_in(cache_dir) == []


def test_a_body_over_the_limit_on_a_ui_route_is_a_413_in_the_envelope(ui_url):
    def chunks():  # no Content-Length: BodyLimit counts it as it arrives
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    for path in ("/ui/gradio_api/queue/join", "/ui/gradio_api/call/run"):
        streamed = httpx.post(ui_url + path, content=chunks(), headers={"content-type": "application/json"},
                              timeout=30)
        in_envelope(streamed, 413, "request_too_large")
        declared = httpx.post(ui_url + path, content=b" " * (MAX_BODY_BYTES + 1),
                              headers={"content-type": "application/json"}, timeout=30)
        in_envelope(declared, 413, "request_too_large")


def generate_through_the_ui(url: str, seed: int) -> str:
    """Gradio's own HTTP API for the UI's button (POST call/<fn>, then its event stream)."""
    started = httpx.post(url + "/ui/gradio_api/call/run", json={"data": ["a cat", "", 1, 7.5, seed]}, timeout=30)
    assert started.status_code == 200, started.text
    stream = httpx.get(url + f"/ui/gradio_api/call/run/{started.json()['event_id']}", timeout=60).text
    data = [line[len("data: "):] for line in stream.splitlines() if line.startswith("data: ")]
    return json.loads(data[-1])[0]["path"]


def test_images_the_ui_made_are_deleted_on_a_schedule(ui_url, cache_dir):
    paths = [generate_through_the_ui(ui_url, seed) for seed in (1, 2, 3)]
    assert all(os.path.isfile(path) and path.startswith(str(cache_dir)) for path in paths)
    deadline = time.monotonic() + 20  # max age 2 s, swept every 1 s
    while files_in(cache_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert files_in(cache_dir) == []


def test_the_sweep_keeps_the_cache_under_its_budget_oldest_first_and_drops_empty_folders(tmp_path):
    from sd21.ui import sweep_cache

    now = time.time()
    for age, name in ((300, "oldest"), (200, "older"), (100, "newer"), (0, "newest")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "image.png").write_bytes(b"x" * 1000)
        os.utime(folder / "image.png", (now - age, now - age))
    (tmp_path / "empty-old").mkdir()
    os.utime(tmp_path / "empty-old", (now - 600, now - 600))
    (tmp_path / "empty-new").mkdir()  # gradio may be about to write into it
    sweep_cache(tmp_path, max_bytes=2500, min_age_s=60)
    assert sorted(p.parent.name for p in files_in(tmp_path)) == ["newer", "newest"]
    # A folder emptied just now is as young as its last change: it goes a sweep later.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-new", "newer", "newest", "older", "oldest"]
    for name in ("older", "oldest"):
        os.utime(tmp_path / name, (now - 120, now - 120))
    sweep_cache(tmp_path, max_bytes=2500, min_age_s=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-new", "newer", "newest"]
