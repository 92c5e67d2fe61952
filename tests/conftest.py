"""Shared fixtures: the whole app is synthesized once per test session (each
synth starts a Node/jsii runtime and costs seconds)."""
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

import app as cdk_app  # noqa: E402
from stacks.application import Application  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def logical_id(construct) -> str:
    """Logical id of the CloudFormation resource behind an L1, L2 or L3 construct."""
    while not isinstance(construct, cdk.CfnElement):
        construct = construct.node.default_child
    return cdk.Stack.of(construct).get_logical_id(construct)


@dataclass
class Synthesized:
    application: Application
    assembly: cdk.cx_api.CloudAssembly
    outdir: Path

    def template(self, stack: cdk.Stack) -> Template:
        return Template.from_stack(stack)

    def template_file(self, stack: cdk.Stack) -> Path:
        return self.outdir / stack.template_file


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    """Synthesize the app with default settings, cdk-nag included: a finding
    without an acknowledgment makes app.synth() raise, failing every test."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(context=cdk_app.default_context(), outdir=str(outdir))
    application = cdk_app.build(app)
    assembly = app.synth()
    return Synthesized(application=application, assembly=assembly, outdir=outdir)


@pytest.fixture(scope="session")
def application(synthesized) -> Application:
    return synthesized.application
