"""python -m tools.preflight [-c key=value ...] [--assembly cdk.out] [--registry host=url ...] [--skip check ...]

Settings are cdk.json's context with -c overrides, as for `cdk synth`. AWS access is
read-only (EC2 describe, Service Quotas, CodeConnections, SSM public parameters, Lambda
account settings, S3 of a weights mirror), in the region of the environment (AWS_REGION /
the profile). The images, charts and Lambda parallelism checked are those of the
synthesized app: --assembly names a cdk.out synthesized with the same settings; without
it the app is synthesized here (aws-cdk-lib needed, about a minute).

Each line is "ok", "FAIL" or "WARN" (a registry that could not be asked; preflightUnknownIsFatal
makes that a FAIL). The exit code is 1 if any line is FAIL.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHECKS = ("capacity", "quota", "connection", "ami", "lambda", "artifacts", "weights")
ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="preflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--registry", action="append", default=[], metavar="HOST=URL",
                        help="ask URL instead of https://HOST (loopback registries in tests)")
    parser.add_argument("--assembly", type=Path, metavar="DIR",
                        help="a cdk.out of the app synthesized with the same settings (default: synthesize it)")
    parser.add_argument("--skip", action="append", default=[], choices=CHECKS)
    return parser.parse_args(argv)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    from stacks.settings import key_value_pairs

    try:
        return key_value_pairs(items, what)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def synthesize(overrides: dict[str, str], outdir: Path) -> str:
    """The app synthesized into outdir as `cdk synth -c ...` would (the CLI hands -c to app.py
    in CDK_CONTEXT_JSON and the output folder in CDK_OUTDIR); why not, or "" when it was."""
    if importlib.util.find_spec("aws_cdk") is None:
        return "aws-cdk-lib is not installed here: pass --assembly with the synth step's cdk.out"
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps(overrides)}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        return f"the app did not synthesize ({(result.stderr.strip().splitlines() or ['no output'])[-1]})"
    return ""


def app_findings(args, overrides: dict[str, str], settings, registries) -> list:
    """The checks that read the synthesized app: its stacks' Lambda parallelism, and the images
    and charts it pulls."""
    wanted = [check for check in ("lambda", "artifacts") if check not in args.skip]
    if not wanted or args.assembly:
        return _read_app(wanted, args.assembly, "", settings, registries)
    with tempfile.TemporaryDirectory(prefix="preflight-cdk.out-") as outdir:
        return _read_app(wanted, Path(outdir), synthesize(overrides, Path(outdir)), settings, registries)


def _read_app(wanted: list[str], outdir: Path, why: str, settings, registries) -> list:
    from stacks import external_artifacts
    from tools.preflight import assembly, checks, parallelism

    if wanted and not why and not assembly.templates(outdir):
        why = f"no templates in {outdir}: pass the cdk.out of `cdk synth`"
    if why:
        names = {"lambda": "Lambda concurrency", "artifacts": "artifacts"}
        return [checks.Finding(False, names[check], why) for check in wanted]
    findings = []
    if "lambda" in wanted:
        needs = {parallelism.stack_name(path): parallelism.concurrent_executions(json.loads(path.read_text()))
                 for path in assembly.templates(outdir)}
        findings.append(checks.lambda_concurrency(_client("lambda"), needs))
    if "artifacts" in wanted:
        inventory = external_artifacts.load()
        unaskable = set(inventory.images) - set(inventory.registry_images)
        findings += checks.artifacts_exist(assembly.referenced(outdir), unaskable, registries, settings)
    return findings


def _client(service: str):
    import boto3

    return boto3.client(service)


def run(args: argparse.Namespace) -> int:
    import boto3

    from tools.preflight import checks
    from tools.preflight.registries import Registries
    from stacks.settings import Settings, SettingsError, default_context

    overrides = _pairs(args.context, "-c")
    context = {**default_context(), **overrides}
    try:
        settings = Settings.from_context(context)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    registries = Registries(_pairs(args.registry, "--registry"))
    findings = []
    if "capacity" not in args.skip:
        findings += checks.inf2_offered(boto3.client("ec2"), settings)
    if "quota" not in args.skip:
        findings += checks.inf_quota(boto3.client("service-quotas"), settings)
    if "connection" not in args.skip:
        service = settings.release.pipeline_connection_arn.split(":")[2]  # codeconnections or codestar-connections
        findings.append(checks.connection_available(boto3.client(service), settings))
    if "ami" not in args.skip:
        findings.append(checks.ami_published(boto3.client("ssm"), settings))
    findings += app_findings(args, overrides, settings, registries)
    if "weights" not in args.skip:
        findings.append(checks.weights_exist(settings, boto3.client("s3"), registries))
    for finding in findings:
        print(finding.line())
    failed = [f for f in findings if f.failed]
    warned = len([f for f in findings if f.warning])
    print(f"preflight: {len([f for f in findings if f.ok])} of {len(findings)} checks ok"
          + (f", {warned} could not be checked (WARN)" if warned else ""))
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except Exception as error:  # noqa: BLE001 - AWS errors (credentials, permissions) in one line
        print(f"error: preflight could not run: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
