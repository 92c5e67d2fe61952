"""System tests run real processes. Under pytest-xdist (`-n 2 --dist loadgroup`) each suite here is
one group, so a worker compiles the tiny model, stages it and starts its servers once for the
suite instead of every worker doing so; the pods suite, the longest, is handed out first. Without
xdist nothing changes (same tests, same order)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
GROUPS = ("pods", "model_image")  # longest first


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist") or not getattr(config.option, "numprocesses", None):
        return
    def group(item) -> str | None:
        path = Path(item.path)
        return next((name for name in GROUPS if (HERE / name) in path.parents), None)

    for item in items:
        name = group(item)
        if name is not None:
            item.add_marker(pytest.mark.xdist_group(name))
    # loadgroup hands out scopes in the order they first appear: the longest group first.
    items.sort(key=lambda item: GROUPS.index(group(item)) if group(item) in GROUPS else len(GROUPS))
