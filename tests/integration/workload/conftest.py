"""Fixtures over the workload stack's synthesized output."""
import json

import pytest

from tools import rendering


@pytest.fixture(scope="session")
def workload_template(synthesized, application) -> dict:
    return json.loads(synthesized.template_file(application.workload).read_text())


@pytest.fixture(scope="session")
def storage_template(synthesized, application) -> dict:
    return json.loads(synthesized.template_file(application.storage).read_text())


@pytest.fixture(scope="session")
def workload_objects(synthesized, application) -> list[dict]:
    return rendering.all_objects(rendering.from_template_file(synthesized.template_file(application.workload)))


@pytest.fixture(scope="session")
def cluster_objects(synthesized, application) -> list[dict]:
    return rendering.all_objects(rendering.from_template_file(synthesized.template_file(application.cluster)))


@pytest.fixture(scope="session")
def workload(workload_objects):
    """workload(kind) -> the one object of that kind of the endpoint itself (compile Job,
    inference Deployment, ...); workload(kind, name) -> the one so named, e.g. the
    cold-start metrics pod's (an observability add-on beside the endpoint)."""
    from stacks.workload.cold_start.metrics_chart import NAME as COLD_START_METRICS

    def one(kind: str, name: str | None = None) -> dict:
        matches = [o for o in workload_objects if o["kind"] == kind and (
            o["metadata"].get("name") == name if name else o["metadata"].get("name") != COLD_START_METRICS)]
        assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
        return matches[0]
    return one


def export_value(template: dict, import_placeholder: str):
    """What `${ImportValue:<export>}` refers to: the exporting output's Value."""
    export = import_placeholder.removeprefix("${ImportValue:").removesuffix("}")
    for output in template["Outputs"].values():
        if output.get("Export", {}).get("Name") == export:
            return output["Value"]
    raise AssertionError(f"no output exports {export}")
