"""What the synthesized app (a cloud assembly, `cdk.out`) pulls and runs, read from its templates.

The artifact check asks the registries about exactly these, not about a list kept by hand:
the images of every Kubernetes object (read back as tools.rendering does), the Helm
charts and the images in their values, the CodeBuild images of the release pipeline, and the
base images of model_image/Dockerfile* (built by the pipeline's image build, outside the
templates). Stdlib and PyYAML only: the pipeline's Preflight venv has no aws-cdk-lib.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tools import rendering

ROOT = Path(__file__).resolve().parents[2]
CODEBUILD = "AWS::CodeBuild::Project"


@dataclass(frozen=True)
class Referenced:
    images: frozenset[str]
    charts: frozenset[tuple[str, str, str]]  # (repository, chart, version)


def templates(outdir: Path) -> list[Path]:
    """The app's templates and those of the release pipeline's stage (a nested assembly)."""
    return sorted(Path(outdir).rglob("*.template.json"))


def _pod_images(node) -> set[str]:
    """Images of every container list anywhere in an object (Deployments, Jobs, CronJobs, ...)."""
    images = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                images |= {c["image"] for c in value if isinstance(c, dict) and "image" in c}
            else:
                images |= _pod_images(value)
    elif isinstance(node, list):
        for item in node:
            images |= _pod_images(item)
    return images


def _values_images(node) -> set[str]:
    """`image: {repository, tag}` blocks of Helm values, at any depth."""
    images = set()
    if isinstance(node, dict):
        image = node.get("image")
        if isinstance(image, dict) and "repository" in image and "tag" in image:
            images.add(f"{image['repository']}:{image['tag']}")
        for value in node.values():
            images |= _values_images(value)
    elif isinstance(node, list):
        for item in node:
            images |= _values_images(item)
    return images


def dockerfile_bases(root: Path = ROOT) -> set[str]:
    bases = set()
    for dockerfile in (root / "model_image").glob("Dockerfile*"):
        bases |= set(re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE))
    return bases


def _ours(image: str) -> bool:
    """Our own image: a repository known only at deploy time (a token placeholder)."""
    return image.startswith("${")


def referenced(outdir: Path, root: Path = ROOT) -> Referenced:
    images, charts = set(dockerfile_bases(root)), set()
    for path in templates(outdir):
        template = json.loads(path.read_text())
        images |= _pod_images(rendering.all_objects(rendering.manifest_resources(template, path.stem)))
        for resource in template.get("Resources", {}).values():
            props = resource.get("Properties", {})
            if resource["Type"] == rendering.HELM_TYPE:
                charts.add((props["Repository"], props["Chart"], str(props["Version"])))
                images |= _values_images(json.loads(rendering.placeholder(props.get("Values") or "{}")))
            elif resource["Type"] == CODEBUILD:
                images.add(props["Environment"]["Image"])
    return Referenced(frozenset(i for i in images if not _ours(i)), frozenset(charts))
