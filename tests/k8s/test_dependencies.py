"""Dependencies point one way: the stacks build specs and pass them to the charts; no
chart module imports from stacks/. The charts read settings only through
WorkloadSettings, which the stacks' Settings must satisfy."""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from stacks.workload.serving.spec import WorkloadSettings
from stacks.settings import Settings

CHARTS = Path(__file__).resolve().parents[2] / "k8s_charts"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_chart_module_imports_the_stacks():
    offenders = {str(path.relative_to(CHARTS)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "stacks")
                 for path in CHARTS.rglob("*.py")}
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def protocol_members() -> set[str]:
    return set(WorkloadSettings.__annotations__) | {
        name for name, value in vars(WorkloadSettings).items() if isinstance(value, property)}


def test_the_settings_give_the_charts_everything_they_read():
    fields = {field.name for field in dataclasses.fields(Settings)}
    properties = {name for name, value in vars(Settings).items() if isinstance(value, property)}
    assert protocol_members() <= fields | properties
    read = set()
    for path in (CHARTS / "workload").glob("*.py"):
        read |= set(re.findall(r"\bsettings\.([a-z_]+)", path.read_text()))
    assert read and read <= protocol_members(), read - protocol_members()
