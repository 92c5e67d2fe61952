"""python -m tools.compile_tag [-c KEY=VALUE ...]: the tag the compile Job runs
for these settings (`compile-<model version>`), for a sandbox that pushes its images by
hand; the pipeline's image build gives the tag itself (stacks/release/commands.py)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from stacks.workload.serving.spec import compile_inputs
    from sd21.artifact import artifact_version
    from stacks.storage.repository import compile_tag
    from stacks.settings import Settings, default_context, key_value_pairs

    parser = argparse.ArgumentParser(prog="python -m tools.compile_tag", description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_context({**default_context(), **key_value_pairs(args.context, "-c")})
    except ValueError as error:  # SettingsError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    inputs = compile_inputs(model_id=settings.model.model_id, model_revision=settings.model.model_revision,
                            neuron_sdk=settings.model.neuron_sdk)
    print(compile_tag(artifact_version(inputs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
