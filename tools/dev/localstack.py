"""Local end-to-end setup for the demo and benchmarks: tiny weights -> cpu compile ->
S3 on loopback (moto) -> stage. Needs the CPU test requirements."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

BUCKET = "sd21-demo"
MODEL_NAME = "tiny"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(app, port: int | None = None):
    """An ASGI app under uvicorn on 127.0.0.1 in a background thread; yields its URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"could not serve on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def start_s3():
    """moto S3 on 127.0.0.1; points this process's boto3 at it. Returns the server."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
                       "AWS_EC2_METADATA_DISABLED": "true"})
    os.environ.pop("AWS_PROFILE", None)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return server


def compile_and_stage(workdir: Path, backend: str = "cpu") -> tuple[Path, str]:
    """Returns (model dir, version) of a staged tiny artifact for the backend."""
    from sd21 import compile as compile_cli
    from sd21 import stage as stage_cli
    from sd21.artifact import CompileInputs, artifact_version
    from tools.dev.tiny import save_tiny_weights

    weights = save_tiny_weights(workdir / "weights")
    common = ["--model-name", MODEL_NAME, "--bucket", BUCKET]
    if compile_cli.main(["--backend", backend, *common, "--weights-source", str(weights),
                         "--model-id", "local/tiny-sd21", "--model-revision", "demo"]) != 0:
        raise SystemExit("compile failed")
    version = artifact_version(CompileInputs.defaults(backend, model_id="local/tiny-sd21", model_revision="demo"))
    model_dir = workdir / f"model-{backend}"
    if stage_cli.main(["--backend", backend, *common, "--version", version, "--dest", str(model_dir)]) != 0:
        raise SystemExit("stage failed")
    return model_dir, version
