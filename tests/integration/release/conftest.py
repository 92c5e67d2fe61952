"""Fixtures over the session's one synthesis (tests/conftest.py): the release stack,
its template, and the pipeline's stages as rendered in that template."""
import pytest

from stacks.release.acknowledgments import logical_id
from stacks.release.stack import PipelineStack


@pytest.fixture(scope="session")
def release(application) -> PipelineStack:
    """The release pipeline stack app.build() creates beside the application stacks (one)."""
    app = application.storage.node.root
    (release,) = [c for c in app.node.children if isinstance(c, PipelineStack)]
    return release


@pytest.fixture(scope="session")
def release_template(synthesized, release):
    return synthesized.template(release)


@pytest.fixture(scope="session")
def resources(release_template) -> dict:
    return release_template.to_json()["Resources"]


@pytest.fixture(scope="session")
def stages(resources) -> list[dict]:
    (pipeline,) = [r for r in resources.values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return pipeline["Properties"]["Stages"]


@pytest.fixture(scope="session")
def deploy_actions(stages, release) -> list[dict]:
    (stage,) = [s for s in stages if s["Name"] == release.stage.stage_name]
    return stage["Actions"]


@pytest.fixture(scope="session")
def project(resources):
    """The CodeBuild project resource of a step, by its L2 construct."""
    def find(construct) -> dict:
        return resources[logical_id(construct)]
    return find

