"""Dependencies point one way: the stacks pick their props from the settings and pass them
to the charts. No module of k8s_charts/ imports from stacks/, and no chart module (one that
defines a cdk8s Chart), nor anything of stacks/ it imports, reads the settings or builds
CDK constructs: a chart sees only its own props."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CHARTS = ROOT / "k8s_charts"
STACKS = ROOT / "stacks"
# What of aws_cdk a chart module may read: pseudo-parameters (the region) as tokens.
CDK_VALUES = {"Aws"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def cdk_imports(path: Path) -> set[str]:
    """What a module imports from aws_cdk: submodules and names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "aws_cdk"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "aws_cdk":
            found |= {f"{node.module}.{alias.name}" if node.module != "aws_cdk" else alias.name
                      for alias in node.names}
    return found


def defines_a_chart(path: Path) -> bool:
    return any(isinstance(node, ast.ClassDef) and any(ast.unparse(base) == "cdk8s.Chart" for base in node.bases)
               for node in ast.walk(ast.parse(path.read_text())))


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def stacks_closure(path: Path) -> set[Path]:
    """The module and every module of stacks/ it imports, transitively."""
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in imported_modules(current):
            found = module.split(".")[0] == "stacks" and module_path(module)
            if found:
                todo.append(found)
    return seen


def test_no_chart_module_imports_the_stacks():
    offenders = {str(path.relative_to(CHARTS)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "stacks")
                 for path in CHARTS.rglob("*.py")}
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_charts_read_their_props_not_the_settings_nor_the_cdk_side():
    charts = [path for path in STACKS.rglob("*.py") if defines_a_chart(path)]
    assert len(charts) >= 9, [str(path.relative_to(ROOT)) for path in charts]
    offenders = {}
    for chart in charts:
        for path in stacks_closure(chart):
            reads = sorted(m for m in imported_modules(path) if m == "stacks.settings" or m.startswith("stacks.settings."))
            reads += sorted(cdk_imports(path) - CDK_VALUES)
            if reads:
                offenders[f"{chart.relative_to(ROOT)} -> {path.relative_to(ROOT)}"] = reads
    assert offenders == {}
