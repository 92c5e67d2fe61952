"""The settings reference (docs/settings.md): every setting by group, its default (cdk.json),
what it accepts (the parser's own words) and what it does (the field's doc in
stacks/settings/groups.py). Run: python -m tools.settings_reference
A test keeps the docs' copy equal to this output, and drives every numeric setting to the
edges it states."""
from __future__ import annotations

import json

from stacks.settings import GROUPS, allowed, camel, doc, setting_fields


def _cell(text: str) -> str:
    """Text inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _shown(value) -> str:
    if value in ("", None, [], {}):
        return "(empty)"
    return "`" + _cell(value if isinstance(value, str) else json.dumps(value)) + "`"


def reference_lines(context: dict) -> list[str]:
    lines: list[str] = []
    headings = {group: heading for group, _, heading in GROUPS}
    current = None
    for group, item in setting_fields():
        if group != current:
            current = group
            lines += ([""] if lines else []) + [f"#### {headings[group]}", "",
                                                "| setting | default | allowed | what it does |", "|---|---|---|---|"]
        key = camel(item.name)
        lines.append(f"| `{key}` | {_shown(context.get(key))} | {_cell(allowed(item.name))} | {_cell(doc(item.name))} |")
    return lines


def main() -> int:
    from stacks.settings import default_context

    print("\n".join(reference_lines(default_context())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
