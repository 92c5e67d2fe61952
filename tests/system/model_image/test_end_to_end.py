"""compile (cpu) -> S3 (moto, loopback) -> stage -> serve over HTTP -> 512x512 PNG."""
from __future__ import annotations

import base64
import io
import json

import httpx
from PIL import Image

from tests.support.sd21_testlib import BUCKET, MODEL_NAME

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_artifact_in_s3_has_manifest_with_checksums(s3_client, artifact_version):
    prefix = f"models/{MODEL_NAME}/{artifact_version}/"
    manifest = json.loads(s3_client.get_object(Bucket=BUCKET, Key=prefix + "manifest.json")["Body"].read())
    assert manifest["version"] == artifact_version
    paths = {entry["path"] for entry in manifest["files"]}
    assert {"traced/unet.pt", "traced/text_encoder.pt", "traced/vae_decoder.pt",
            "traced/vae_post_quant_conv.pt", "scheduler/scheduler_config.json",
            "vae/config.json", "unet/config.json"} <= paths
    assert any(path.startswith("tokenizer/") for path in paths)
    assert all(len(entry["sha256"]) == 64 and entry["size"] > 0 for entry in manifest["files"])
    assert manifest["compile_inputs"]["backend"] == "cpu"
    assert "torch" in manifest["library_versions"] and "diffusers" in manifest["library_versions"]
    keys = {obj["Key"] for obj in s3_client.list_objects_v2(Bucket=BUCKET, Prefix="models/")["Contents"]}
    assert prefix + manifest["archive"]["key"] in keys
    assert not [key for key in keys if "/.uploads/" in key], "temporary upload keys must be cleaned up"


def test_png_512_over_real_http(live_server):
    response = httpx.post(live_server.url + "/v1/images/generations", timeout=60,
                          json={"prompt": "a red cube", "steps": 2, "seed": 7, "response_format": "png"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(response.content)).size == (512, 512)


def test_b64_json_is_deterministic_for_a_seed(live_server):
    body = {"prompt": "a blue ball", "negative_prompt": "blurry", "steps": 2, "guidance_scale": 5, "seed": 3}
    first = httpx.post(live_server.url + "/v1/images/generations", json=body, timeout=60).json()
    second = httpx.post(live_server.url + "/v1/images/generations", json=body, timeout=60).json()
    image = base64.b64decode(first["data"][0]["b64_json"])
    assert image.startswith(PNG_MAGIC) and Image.open(io.BytesIO(image)).size == (512, 512)
    assert first["data"][0]["seed"] == 3
    assert first["data"][0]["b64_json"] == second["data"][0]["b64_json"]


def test_probes_metrics_and_openapi(live_server):
    assert httpx.get(live_server.url + "/health").json() == {"status": "ok"}
    assert httpx.get(live_server.url + "/ready").status_code == 200
    metrics = httpx.get(live_server.url + "/metrics").text
    for name in ("sd21_queue_depth", "sd21_inflight_requests", "sd21_request_latency_seconds_bucket",
                 "sd21_images_total", "sd21_device_busy_seconds_total"):
        assert name in metrics
    served = httpx.get(live_server.url + "/openapi.json").json()
    assert "/v1/images/generations" in served["paths"]
