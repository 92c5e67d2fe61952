"""Session fixtures: tiny weights -> cpu compile -> moto S3 on loopback -> stage -> live server."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.sd21_testlib import ThreadedServer, compile_args, run_stage


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
