"""The inventory of what a deployment pulls from outside this repository
(external_artifacts.yaml beside this file): images, Helm charts, node AMIs and model weights,
each with the evidence that it exists. Read by the tests and the release preflight."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

INVENTORY = Path(__file__).with_name("external_artifacts.yaml")
VERIFIED = ("yes", "third-party", "no")


@dataclass(frozen=True)
class Inventory:
    images: frozenset[str]
    charts: frozenset[tuple[str, str, str]]  # (repository, chart, version)
    models: frozenset[tuple[str, str]]       # (model id, revision)
    amis: frozenset[str]                     # Karpenter AMI aliases
    addons: frozenset[str]                   # EKS add-on names
    metrics: frozenset[str]                  # other software's metric names we read
    entries: tuple[dict, ...]

    @property
    def registry_images(self) -> list[str]:
        """The images a registry can be asked about (not those CodeBuild itself manages)."""
        return sorted(e["ref"] for e in self.entries if "ref" in e and e.get("registry") != "codebuild")

    @property
    def charts_sorted(self) -> list[tuple[str, str, str]]:
        return sorted(self.charts)


def load(path: Path = INVENTORY) -> Inventory:
    data = yaml.safe_load(path.read_text())
    entries = tuple(entry for section in ("images", "charts", "amis", "models", "addons", "metrics") for entry in data[section])
    for entry in entries:
        missing = {"used_by", "evidence", "verified"} - set(entry)
        if missing or entry["verified"] not in VERIFIED or not str(entry["evidence"]).strip():
            raise ValueError(f"{path.name}: entry {entry} needs used_by, evidence and verified ({'/'.join(VERIFIED)})")
    return Inventory(
        images=frozenset(entry["ref"] for entry in data["images"]),
        charts=frozenset((c["repository"], c["chart"], str(c["version"])) for c in data["charts"]),
        models=frozenset((m["id"], m["revision"]) for m in data["models"]),
        amis=frozenset(a["alias"] for a in data["amis"]),
        addons=frozenset(a["name"] for a in data["addons"]),
        metrics=frozenset(m["name"] for m in data["metrics"]),
        entries=entries,
    )
