"""The unit layer (`make check`): no whole-app synth, no subprocess, no sleep. A test here that
reaches for one fails at once, so the layer stays fast; such a test belongs in
tests/integration/ or tests/system/."""
import subprocess
import time

import aws_cdk  # starts the jsii runtime (a node process) before the rules below apply
import pytest

import stacks.application


def _refuse(what: str):
    def refused(*args, **kwargs):
        raise AssertionError(f"a unit test may not {what}; move it to tests/integration or tests/system")
    return refused


@pytest.fixture(autouse=True)
def _unit_layer_rules(monkeypatch):
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a subprocess"))
    monkeypatch.setattr(time, "sleep", _refuse("sleep (inject a clock, or wait on the condition)"))
    monkeypatch.setattr(aws_cdk.App, "synth", _refuse("synthesize an app (build one construct in a bare Stack)"))
    monkeypatch.setattr(stacks.application, "build_application", _refuse("build the whole application"))
