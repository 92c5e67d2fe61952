"""Each program the release runs imports only what its own install provides.

The pipeline installs a different set for each: the CDK app gets `requirements.txt`
(with the image's package `sd21` installed without its dependencies), the Preflight and
RenderDiff steps get `requirements-preflight.txt` (and `sd21` the same way). A module that
imports a package outside that set works in the dev venv, where everything is installed,
and fails in the step (`pip install -r requirements.txt && cdk synth`: ModuleNotFoundError).

The imports are read from the source (every import statement, also those inside
functions: a deferred import fails just as surely when its function runs), from the
entry point through our own modules; a third-party name is traced to the distribution that
provides it and checked against the closure of the step's requirement file.
"""
from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
# Where our own top-level packages live (sd21 is the image's package).
OWN = {"stacks": ROOT / "stacks", "k8s_charts": ROOT / "k8s_charts", "sd21": ROOT / "model_image" / "sd21",
       "tools": ROOT / "tools", "app": ROOT / "app.py"}

# (entry module, requirement file its step installs)
PROGRAMS = [
    ("app", "requirements.txt"),                            # cdk synth (cdk.json's app command)
    ("tools.preflight.__main__", "requirements-preflight.txt"),  # the pipeline's Preflight step
    ("tools.rendering", "requirements-preflight.txt"),       # the pipeline's RenderDiff steps
]


def module_file(name: str) -> Path | None:
    top, *rest = name.split(".")
    if top not in OWN:
        return None
    base = OWN[top]
    if top == "app":
        return base if not rest else None
    path = base.joinpath(*rest)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(name: str, path: Path) -> set[str]:
    """Every module an import statement in the file names (absolute, submodules resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            names.add(base)
            # `from sd21 import metric_names` imports a module, not an attribute.
            names.update(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}"))
    return {n for n in names if n != "__future__"}


def reachable(entry: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Our modules reached from the entry (with what each imports), and the outside
    top-level names each of them imports."""
    ours: dict[str, set[str]] = {}
    outside: dict[str, set[str]] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in ours:
            continue
        path = module_file(name)
        imports = imported_names(name, path)
        ours[name] = imports
        for imported in imports:
            if imported.split(".")[0] in OWN:
                # A package's __init__ runs before its submodule.
                parts = imported.split(".")
                todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]))]
            else:
                outside.setdefault(imported.split(".")[0], set()).add(name)
    return ours, outside


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(file: Path) -> list[str]:
    lines = []
    for raw in file.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            lines += requirement_lines(file.parent / line[3:].strip())
        elif not line.startswith("-"):
            lines.append(line)
    return lines


@lru_cache(maxsize=None)
def closure(requirement_file: str) -> frozenset[str]:
    """The distributions `pip install -r FILE` installs: the pinned ones and everything
    they require (markers evaluated here), read from the installed metadata."""
    found: set[str] = set()
    todo = [Requirement(line) for line in requirement_lines(ROOT / requirement_file)]
    while todo:
        requirement = todo.pop()
        name = canonical(requirement.name)
        if name in found:
            continue
        found.add(name)
        for text in metadata.requires(requirement.name) or []:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                todo.append(needed)
    return frozenset(found)


@lru_cache(maxsize=None)
def providers() -> dict[str, set[str]]:
    return {top: {canonical(d) for d in dists} for top, dists in metadata.packages_distributions().items()}


@pytest.mark.parametrize("entry, requirement_file", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_a_program_imports_only_what_its_requirement_file_installs(entry, requirement_file):
    _, outside = reachable(entry)
    allowed = closure(requirement_file)
    missing = {}
    for top, importers in outside.items():
        if top in sys.stdlib_module_names:
            continue
        dists = providers().get(top)
        assert dists, f"{top!r} (imported by {sorted(importers)}) is provided by no installed distribution"
        if not dists & allowed:
            missing[top] = sorted(importers)
    assert not missing, (f"`pip install -r {requirement_file}` does not install what these imports need "
                         f"(name: importing modules): {missing}")


def test_the_cdk_app_uses_the_image_package_only_through_its_standard_library_modules():
    """sd21 is installed with --no-deps beside the CDK app: each sd21 module the app reaches
    may import the standard library and sd21 only (sd21.api, with pydantic, may not be reached)."""
    ours, _ = reachable("app")
    offending = {name: sorted(i for i in imports if i.split(".")[0] not in OWN
                              and i.split(".")[0] not in sys.stdlib_module_names)
                 for name, imports in ours.items() if name.split(".")[0] == "sd21"}
    assert not {k: v for k, v in offending.items() if v}, offending


def test_the_walk_sees_deferred_and_relative_imports():
    """The checks above are only as good as the walk: it must see an import inside a function and
    resolve `from .x import y` and `from package import module`."""
    ours, outside = reachable("tools.rendering")
    assert "boto3" in outside  # deferred, inside deployed_template()
    ours, _ = reachable("tools.cost")
    assert "sd21.contract" in ours
    sd21_ours, _ = reachable("sd21.weights")
    assert {"sd21.s3", "sd21.artifact", "sd21.env"} <= set(sd21_ours)


# --- the layers: runtime, charts, stacks, entry points ---------------------------------

# Lower layers never import higher ones: the image's package knows nothing of Kubernetes or
# CDK, the shared chart machinery nothing of the units, and no library module reaches back
# into a CLI or the entry point.
LAYERS = {"sd21": 0, "k8s_charts": 1, "stacks": 2, "tools": 3, "app": 4}


def own_modules() -> list[str]:
    names = ["app"]
    for top in ("sd21", "k8s_charts", "stacks", "tools"):
        for path in sorted(OWN[top].rglob("*.py")):
            if "imports" in path.relative_to(OWN[top]).parts[:1] and top == "k8s_charts":
                continue  # generated by cdk8s import
            parts = path.relative_to(OWN[top].parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def own_edges() -> dict[str, set[str]]:
    """module -> our modules it imports (the deepest that exists: `a.b` for `from a.b import c`)."""
    edges = {}
    for name in own_modules():
        targets = set()
        for imported in imported_names(name, module_file(name)):
            parts = imported.split(".")
            if parts[0] not in OWN:
                continue
            for i in range(len(parts), 0, -1):
                if module_file(".".join(parts[:i])):
                    targets.add(".".join(parts[:i]))
                    break
        edges[name] = targets - {name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_ours_imports_itself_through_others():
    """Deferred imports count: a cycle hidden in a function is still a cycle."""
    assert cycles(own_edges()) == []


def test_no_layer_imports_one_above_it():
    upward = sorted((name, target) for name, targets in own_edges().items() for target in targets
                    if LAYERS[target.split(".")[0]] > LAYERS[name.split(".")[0]])
    assert upward == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# --- inside the stacks: stacks wire, units build ------------------------------------

def _imports_of(path: Path) -> set[tuple[str, str]]:
    """(module, name) of every `from module import name` in the file, and (module, "") of `import module`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {(node.module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {(alias.name, "") for alias in node.names}
    return found


def _defines_a_chart(path: Path) -> bool:
    return any(isinstance(node, ast.ClassDef) and any("Chart" in ast.unparse(base) for base in node.bases)
               for node in ast.walk(ast.parse(path.read_text())))


def test_only_stacks_read_the_whole_settings():
    """A unit gets keyword-only props of exactly what it reads; only the stacks (and the
    application that builds them) pick those from Settings."""
    readers = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "stacks").rglob("*.py")
                     if ("stacks.settings", "Settings") in _imports_of(path))
    allowed = [p for p in readers if p.endswith("/stack.py") or p == "stacks/application.py"]
    assert readers == allowed, sorted(set(readers) - set(allowed))


def test_a_chart_knows_nothing_of_cloudformation():
    """Charts (cdk8s) get values and objects from their unit's construct; AWS CDK stays on that side."""
    offenders = {str(path.relative_to(ROOT)): sorted(m for m, _ in _imports_of(path)
                                                     if m.split(".")[0] == "aws_cdk" or m == "stacks.settings")
                 for path in list((ROOT / "stacks").rglob("*.py")) + list((ROOT / "k8s_charts").glob("*.py"))
                 if _defines_a_chart(path)}
    assert {path: mods for path, mods in offenders.items() if mods} == {}
