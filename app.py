#!/usr/bin/env python3
"""CDK entry point: read the settings, build the application stacks and the release pipeline, run cdk-nag."""
import os
import sys

# Node 20 is what the team's machines and CI run; jsii only warns about it.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402

from stacks.application import Application, build_application  # noqa: E402
from stacks.compliance import UnacknowledgedFindings, check_compliance, fail_on_any_finding  # noqa: E402
from stacks.release.stack import PipelineStack  # noqa: E402
from stacks.settings import Settings, SettingsError, default_context  # noqa: E402,F401 - default_context: tests


def build_release(scope: cdk.App, settings: Settings, prefix: str = "Sd21") -> PipelineStack:
    """The release pipeline stack; its deploy stage builds the application stacks again."""
    return PipelineStack(scope, f"{prefix}-Release", settings=settings,
                         description="sd21: release pipeline (CDK Pipelines, change-set approvals)")


def build(app: cdk.App) -> Application:
    """The application stacks and, beside them in `app`, the release pipeline stack."""
    settings = Settings.from_context(app.node.get_all_context())
    application = build_application(app, settings)
    build_release(app, settings)
    check_compliance(app)
    return application


def main() -> int:
    app = cdk.App(context=default_context())
    try:
        build(app)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    app.synth()
    try:
        fail_on_any_finding(app.outdir)
    except UnacknowledgedFindings as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
