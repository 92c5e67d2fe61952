"""The settings reference in the README: every setting, its default (cdk.json) and
what it accepts (the parser's own words). Run: python -m tools.settings_reference
A test keeps the README's copy equal to this output, and drives every numeric
setting to the edges the README states."""
from __future__ import annotations

import json
from dataclasses import fields

from stacks.settings import Settings, allowed, camel


def _cell(text: str) -> str:
    """Text inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _shown(value) -> str:
    if value in ("", None, [], {}):
        return "(empty)"
    return "`" + _cell(value if isinstance(value, str) else json.dumps(value)) + "`"


def reference_lines(context: dict) -> list[str]:
    lines = ["| setting | default | allowed |", "|---|---|---|"]
    for field in fields(Settings):
        key = camel(field.name)
        lines.append(f"| `{key}` | {_shown(context.get(key))} | {_cell(allowed(field.name))} |")
    return lines


def main() -> int:
    from stacks.settings import default_context

    print("\n".join(reference_lines(default_context())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
