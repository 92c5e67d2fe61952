"""The Gradio UI produces an image in a real headless Debian chromium (no browser download)."""
from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile

import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
# --disable-dev-shm-usage: the pipeline's Build step runs this test in a CodeBuild container,
# whose /dev/shm is Docker's 64 MB default; Chromium's renderers crash when it fills up.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def _require_chromium():
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing in CI: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")


def test_ui_generates_an_image(live_server):
    _require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="sd21-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = context.new_page()
            page.goto(live_server.url + "/ui/", wait_until="load", timeout=60_000)  # fill() waits for the form
            page.locator("#prompt textarea").fill("a lighthouse at dusk")
            steps = page.locator("#steps input[type=number]")
            steps.fill("1")
            steps.press("Enter")
            page.locator("#generate").click()
            image = page.locator("#result img")
            image.wait_for(state="visible", timeout=60_000)
            src = image.get_attribute("src")
            if src.startswith("data:"):
                data = base64.b64decode(src.split(",", 1)[1])
            else:
                data = page.request.get(src if src.startswith("http") else live_server.url + src).body()
            assert Image.open(io.BytesIO(data)).size == (512, 512)
            assert "seed" in page.locator("#info textarea").input_value()
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
