"""python -m tools.dev.bench: figures for the tiny CPU pipeline (printed, not asserted).

1. server overhead per request: HTTP round trip vs direct pipeline call;
2. device-busy fraction with 8 concurrent clients (from sd21_device_busy_seconds);
3. the scale-to-zero gateway's extra hop: the same requests direct and through it;
4. staging time and peak disk: sd21-stage vs download-then-extract of a tar.gz
   (boto3 download_file + tarfile, the `aws s3 cp` + `tar -xzf` equivalent,
   since the AWS CLI is not in the image), same bytes, same loopback S3.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import tarfile
import tempfile
import threading
import time
from pathlib import Path


class PeakDisk:
    """Samples the bytes under a directory to find the peak during an operation."""

    def __init__(self, root: Path):
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for path in self.root.rglob("*"):
                    try:
                        total += path.stat().st_size if path.is_file() else 0
                    except FileNotFoundError:
                        pass
            except FileNotFoundError:
                continue  # a directory was renamed mid-walk (the atomic publish): sample again
            self.peak = max(self.peak, total)
            time.sleep(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def device_busy_seconds(metrics_text: str) -> float:
    match = re.search(r"^sd21_device_busy_seconds_total ([0-9.e+-]+)$", metrics_text, re.M)
    return float(match.group(1)) if match else 0.0


def bench_server(model_dir: Path, version: str, steps: int, rounds: int, requests: int) -> None:
    import httpx

    from sd21.bench_client import drive, report
    from tools.dev.localstack import serving
    from sd21.pipeline import GenerationParams
    from sd21.server import create_app
    from sd21.service import GenerationService, ServiceSettings

    service = GenerationService(ServiceSettings(backend="cpu", model_dir=model_dir, model_version=version,
                                                queue_size=8, warmup_steps=steps))
    service._load()  # noqa: SLF001 - load synchronously before timing
    params = GenerationParams(prompt="benchmark", steps=steps, seed=1)
    body = {"prompt": "benchmark", "steps": steps, "seed": 1, "response_format": "png"}
    with serving(create_app(service, with_ui=False)) as url:
        direct, http = [], []
        with httpx.Client(timeout=120) as client:
            # Interleaved after two warm-up rounds, so machine noise hits both sides alike.
            for round_index in range(rounds + 2):
                started = time.perf_counter()
                service.pipeline.generate(params)
                middle = time.perf_counter()
                assert client.post(url + "/v1/images/generations", json=body).status_code == 200
                if round_index >= 2:
                    direct.append(middle - started)
                    http.append(time.perf_counter() - middle)
        d, h = statistics.median(direct), statistics.median(http)
        print(f"[1] server overhead ({steps} steps, median of {rounds}): direct {d * 1000:.0f} ms, "
              f"HTTP {h * 1000:.0f} ms, overhead {(h - d) * 1000:.0f} ms/request ({(h - d) / d:.1%}, "
              f"includes PNG encoding)")

        busy_before = device_busy_seconds(httpx.get(url + "/metrics").text)
        result = asyncio.run(drive(url + "/v1/images/generations", 8, requests, body, 300))
        busy = device_busy_seconds(httpx.get(url + "/metrics").text) - busy_before
        print(f"[2] 8 concurrent clients, {requests} requests: device busy {busy / result['wall_s']:.1%} of "
              f"{result['wall_s']:.2f}s wall")
        print("    " + report(result).replace("\n", "\n    "))
        bench_gateway(url, body, rounds)
    service.shutdown()


def _median_ms(client, method: str, url: str, rounds: int, **kwargs) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        assert client.request(method, url, **kwargs).status_code == 200
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def bench_gateway(upstream: str, body: dict, rounds: int) -> None:
    import httpx
    from prometheus_client import CollectorRegistry

    from sd21.gateway import GatewaySettings, create_app
    from tools.dev.localstack import serving

    figures = {}
    with serving(create_app(GatewaySettings(upstream, 120), CollectorRegistry())) as via, \
            httpx.Client(timeout=120) as client:
        for label, method, path, kwargs, n in (("GET /ready", "GET", "/ready", {}, 200),
                                               ("generate (PNG)", "POST", "/v1/images/generations",
                                                {"json": body}, rounds)):
            _median_ms(client, method, via + path, 2, **kwargs)  # warm both connections
            direct = _median_ms(client, method, upstream + path, n, **kwargs)
            proxied = _median_ms(client, method, via + path, n, **kwargs)
            figures[label] = (direct, proxied, n)
    print("[3] gateway hop (scale-to-zero mode), medians:")
    for label, (direct, proxied, n) in figures.items():
        print(f"    {label:15s} direct {direct:7.1f} ms   via gateway {proxied:7.1f} ms   "
              f"+{proxied - direct:.1f} ms ({n} requests)")


def bench_staging(model_dir: Path, version: str, workdir: Path) -> None:
    import boto3

    from sd21 import stage as stage_cli
    from tools.dev.localstack import BUCKET, MODEL_NAME

    client = boto3.client("s3")
    source = model_dir / version
    archive = workdir / "baseline.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=".")
    client.upload_file(str(archive), BUCKET, "baseline/artifact.tar.gz")
    archive.unlink()
    artifact_bytes = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())

    runs = {}
    for label in ("sd21-stage", "download+extract"):
        root = workdir / label
        root.mkdir()
        with PeakDisk(root) as disk:
            started = time.perf_counter()
            if label == "sd21-stage":
                assert stage_cli.main(["--backend", "cpu", "--bucket", BUCKET, "--model-name", MODEL_NAME, "--version", version,
                                       "--dest", str(root)]) == 0
            else:
                local = root / "artifact.tar.gz"
                client.download_file(BUCKET, "baseline/artifact.tar.gz", str(local))
                with tarfile.open(local, "r:gz") as tar:
                    tar.extractall(root / "model", filter="data")
                local.unlink()
            elapsed = time.perf_counter() - started
        runs[label] = (elapsed, disk.peak)
        shutil.rmtree(root)
    print(f"[4] staging {artifact_bytes / 2**20:.1f} MiB artifact from loopback S3:")
    for label, (elapsed, peak) in runs.items():
        print(f"    {label:17s} {elapsed:6.2f} s   peak disk {peak / 2**20:6.1f} MiB "
              f"({peak / artifact_bytes:.2f}x artifact)")
    print("    sd21-stage also verifies every sha256; the baseline verifies nothing.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dev.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=24)
    args = parser.parse_args(argv)

    from tools.dev import localstack

    s3 = localstack.start_s3()
    try:
        with tempfile.TemporaryDirectory(prefix="sd21-bench-") as workdir_name:
            workdir = Path(workdir_name)
            model_dir, version = localstack.compile_and_stage(workdir)
            bench_server(model_dir, version, args.steps, args.rounds, args.requests)
            bench_staging(model_dir, version, workdir)
    finally:
        s3.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
