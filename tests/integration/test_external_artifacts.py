"""Every image, chart and model the synthesized app pulls from outside is in the
inventory with its evidence (stacks/external_artifacts.yaml)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tools import rendering
from stacks import external_artifacts
from stacks.settings import SUPPORTED_KUBERNETES
from tests.conftest import ROOT

HELM = "Custom::AWSCDK-EKS-HelmChart"


def templates(outdir: Path) -> list[Path]:
    """The app's templates and those of the release pipeline's stage (a nested assembly)."""
    return sorted(outdir.rglob("*.template.json"))


def referenced(outdir: Path) -> tuple[set[str], set[tuple[str, str, str]]]:
    images, charts = set(), set()
    for path in templates(outdir):
        template = json.loads(path.read_text())
        for obj in rendering.all_objects(rendering.from_template_file(path)):
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            images |= {c["image"] for c in pod.get("containers", []) + pod.get("initContainers", [])}
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] == HELM:
                charts.add((props["Repository"], props["Chart"], props["Version"]))
                values = rendering.placeholder(props.get("Values", "{}"))
                for image in re.findall(r'"image":\{"repository":"([^"]+)","tag":"([^"]+)"', values):
                    images.add(":".join(image))
            if resource["Type"] == "AWS::CodeBuild::Project":
                images.add(props["Environment"]["Image"])
    return images, charts


def dockerfile_bases() -> set[str]:
    bases = set()
    for dockerfile in (ROOT / "model_image").glob("Dockerfile*"):
        bases |= set(re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE))
    return bases


@pytest.fixture(scope="module")
def inventory():
    return external_artifacts.load()


def ours(image: str) -> bool:
    """Our own images: the Storage stack's repository, known only at deploy time."""
    return "ModelImageRepository" in image and image.startswith("${")


def unlisted(outdir: Path, inventory: external_artifacts.Inventory) -> set:
    images, charts = referenced(outdir)
    outside = {image for image in images if not ours(image)}
    assert outside and charts
    return (outside - inventory.images) | (charts - inventory.charts)


@pytest.mark.parametrize("mode", ["default", "scale-to-zero"])
def test_every_image_and_chart_the_app_pulls_is_inventoried(mode, synthesized, zero, inventory):
    assert unlisted(synthesized.outdir if mode == "default" else zero.outdir, inventory) == set()


def test_image_bases_and_every_supported_scheduler_are_inventoried(inventory):
    assert dockerfile_bases() - inventory.images == set()
    schedulers = {f"registry.k8s.io/kube-scheduler:{tag}" for tag in SUPPORTED_KUBERNETES.values()}
    assert schedulers - inventory.images == set()


def test_the_weights_the_compile_job_fetches_are_inventoried(synthesized, application, inventory):
    objects = rendering.all_objects(rendering.from_template_file(synthesized.template_file(application.workload)))
    (job,) = [o for o in objects if o["kind"] == "Job"]
    env = {e["name"]: e["value"] for c in job["spec"]["template"]["spec"]["containers"] for e in c["env"]}
    assert (env["SD21_MODEL_ID"], env["SD21_MODEL_REVISION"]) in inventory.models


def test_the_node_ami_is_inventoried(synthesized, application, inventory):
    objects = rendering.all_objects(rendering.from_template_file(synthesized.template_file(application.cluster)))
    (node_class,) = [o for o in objects if o["kind"] == "EC2NodeClass"]
    aliases = {term["alias"] for term in node_class["spec"]["amiSelectorTerms"]}
    assert aliases and aliases <= inventory.amis


def test_the_checks_see_an_unlisted_artifact(synthesized, tmp_path):
    """An entry removed (a version bumped without evidence) is reported; a bad entry is refused."""
    text = external_artifacts.INVENTORY.read_text()
    entry = "  - ref: public.ecr.aws/neuron/neuron-device-plugin:2.32.0.0\n"
    without = tmp_path / "without.yaml"
    without.write_text(text.replace(entry, "  - ref: public.ecr.aws/neuron/neuron-device-plugin:0.0.0.0\n"))
    assert unlisted(synthesized.outdir, external_artifacts.load(without)) == {entry.split("ref: ")[1].strip()}
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace('    verified: "yes"', "    verified: maybe", 1))
    with pytest.raises(ValueError, match="needs used_by, evidence and verified"):
        external_artifacts.load(broken)


def test_every_eks_addon_is_inventoried(synthesized, application, inventory):
    template = synthesized.template(application.cluster)
    names = {r["Properties"]["AddonName"] for r in template.find_resources("AWS::EKS::Addon").values()}
    assert {"eks-node-monitoring-agent", "amazon-cloudwatch-observability"} <= names
    assert names <= inventory.addons, names - inventory.addons


def test_every_outside_metric_the_cold_start_pod_asks_for_is_inventoried(inventory):
    """Names of other software's metrics in our queries, from the queries themselves."""
    from sd21.cold_start_metrics import queries

    asked = set()
    for query in queries("inf2", "60s").values():
        asked |= {name.removesuffix("_sum").removesuffix("_count")
                  for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query)}
    assert asked == inventory.metrics
