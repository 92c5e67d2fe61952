"""python -m stacks.preflight [-c key=value ...] [--registry host=url ...] [--skip check ...]

Settings are cdk.json's context with -c overrides, as for `cdk synth`. AWS access is
read-only (EC2 describe, Service Quotas, CodeConnections, S3 of a weights mirror), in
the region of the environment (AWS_REGION / the profile).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CHECKS = ("capacity", "quota", "connection", "artifacts", "weights")
CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="preflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--registry", action="append", default=[], metavar="HOST=URL",
                        help="ask URL instead of https://HOST (loopback registries in tests)")
    parser.add_argument("--skip", action="append", default=[], choices=CHECKS)
    return parser.parse_args(argv)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {what} {item!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs


def run(args: argparse.Namespace) -> int:
    import boto3

    from stacks import external_artifacts
    from stacks.preflight import checks
    from stacks.preflight.registries import Registries
    from stacks.settings import Settings, SettingsError

    context = {**json.loads(CDK_JSON.read_text())["context"], **_pairs(args.context, "-c")}
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
        service = settings.pipeline_connection_arn.split(":")[2]  # codeconnections or codestar-connections
        findings.append(checks.connection_available(boto3.client(service), settings))
    if "artifacts" not in args.skip:
        findings += checks.artifacts_exist(external_artifacts.load(), registries)
    if "weights" not in args.skip:
        findings.append(checks.weights_exist(settings, boto3.client("s3"), registries))
    for finding in findings:
        print(finding.line())
    failed = [f for f in findings if not f.ok]
    print(f"preflight: {len(findings) - len(failed)} of {len(findings)} checks ok")
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
