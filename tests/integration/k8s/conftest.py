"""Fixtures over the Kubernetes objects of the (once) synthesized app."""
import json

import pytest

from tools import rendering


@pytest.fixture(scope="session")
def cluster_template(synthesized, application) -> dict:
    return json.loads(synthesized.template_file(application.cluster).read_text())


@pytest.fixture(scope="session")
def network_template(synthesized, application) -> dict:
    return json.loads(synthesized.template_file(application.network).read_text())


@pytest.fixture(scope="session")
def manifests(synthesized, application) -> list[rendering.ManifestResource]:
    return rendering.from_template_file(synthesized.template_file(application.cluster))


@pytest.fixture(scope="session")
def objects(manifests) -> list[dict]:
    return rendering.all_objects(manifests)


@pytest.fixture(scope="session")
def find(objects):
    """find(kind, name) -> the one rendered object of that kind and name."""
    def find(kind: str, name: str) -> dict:
        matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
        return matches[0]
    return find


@pytest.fixture(scope="session")
def manifest_of(manifests):
    """manifest_of(kind, name) -> the manifest resource that applies that object."""
    def manifest_of(kind: str, name: str) -> rendering.ManifestResource:
        matches = [m for m in manifests
                   if any(o["kind"] == kind and o["metadata"]["name"] == name for o in m.objects)]
        assert len(matches) == 1, f"expected one manifest with {kind} {name}, found {len(matches)}"
        return matches[0]
    return manifest_of
