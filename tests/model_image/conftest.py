"""Session fixtures: tiny weights -> cpu compile -> moto S3 on loopback -> stage -> live server."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sd21_testlib import BUCKET, ThreadedServer, compile_args, free_port, run_stage


def pytest_configure(config):
    # Tracing a diffusers model warns by design; deprecations come from dependencies.
    config.addinivalue_line("filterwarnings", "ignore:Converting a tensor to a Python")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning")


@pytest.fixture(scope="session")
def s3_env():
    """moto S3 server on 127.0.0.1; env makes every boto3 client (and subprocess) use it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {key: os.environ.get(key) for key in [*env, "AWS_PROFILE"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_client(s3_env):
    import boto3

    return boto3.client("s3")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    from sd21.tiny import save_tiny_weights

    return save_tiny_weights(tmp_path_factory.mktemp("tiny-weights"))


@pytest.fixture(scope="session")
def artifact_version(s3_env, tiny_weights) -> str:
    from sd21 import compile as compile_cli
    from sd21.artifact import CompileInputs, artifact_version

    assert compile_cli.main(compile_args(tiny_weights)) == 0
    return artifact_version(
        CompileInputs.defaults("cpu", model_id="local/tiny-sd21", model_revision="test")
    )


@pytest.fixture(scope="session")
def staged_dir(s3_env, artifact_version, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("model")
    result = run_stage(s3_env, dest, artifact_version)
    assert result.returncode == 0, result.stderr
    return dest


@pytest.fixture(scope="session")
def live_server(staged_dir, artifact_version):
    with ThreadedServer(staged_dir, artifact_version, queue_size=2, with_ui=True) as server:
        yield server
