"""Reusable validators for rendered Kubernetes objects.

* Built-in kinds: the Kubernetes OpenAPI schema of the cluster's version, in
  strict mode (an unknown field is an error), as shipped by kubernetes-validate.
* Custom resources whose CRD is vendored in k8s_charts/crds/ (Karpenter): the
  CRD's openAPIV3Schema with jsonschema, made strict the way the API server
  prunes: an object schema that lists `properties` allows nothing else, unless it
  says x-kubernetes-preserve-unknown-fields or has its own additionalProperties.
* KEDA objects (no CRD file could be vendored offline): the models generated from
  KEDA's API types, @kubernetes-models/keda on npm (pinned in package.json), run
  by Node (keda_validate.mjs), plus a check that every field is one KEDA's types
  declare; the HPA behavior inside a ScaledObject against the Kubernetes schema.

`validate(obj, version)` picks the right one and raises ManifestError naming the object.
"""
from __future__ import annotations

import copy
import json
import subprocess
from functools import lru_cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "k8s_charts" / "crds"
KEDA_VALIDATOR = Path(__file__).with_name("keda_validate.mjs")
KEDA_GROUPS = ("keda.sh", "eventing.keda.sh")


class ManifestError(AssertionError):
    """A rendered object does not validate; the message names it and the problem."""


def describe(obj: dict) -> str:
    metadata = obj.get("metadata", {})
    where = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{obj.get('apiVersion')} {obj.get('kind')} {where}{metadata.get('name')}"


def validate_builtin(obj: dict, kubernetes_version: str) -> str:
    """Strict OpenAPI validation; returns the schema version used (newest shipped <= the cluster's)."""
    try:
        return kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = "/".join(str(p) for p in err.path)
        raise ManifestError(f"{describe(obj)}: {err.message} (at /{path})") from None
    except kubernetes_validate.SchemaNotFoundError:
        raise ManifestError(f"{describe(obj)}: no Kubernetes {kubernetes_version} schema for this kind") from None


def _strict(schema: dict) -> dict:
    """A copy of a structural schema in which unknown fields are errors."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node
                    and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return schema


@lru_cache(maxsize=None)
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict openAPIV3Schema of every served version of the vendored CRDs."""
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schemas[(f"{group}/{version['name']}", kind)] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def is_custom_resource(obj: dict) -> bool:
    group = obj.get("apiVersion", "").rpartition("/")[0]
    return any(api_version.rpartition("/")[0] == group for api_version, _ in crd_schemas())


def validate_custom_resource(obj: dict) -> None:
    schema = crd_schemas().get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        raise ManifestError(f"{describe(obj)}: no served version of a vendored CRD has this apiVersion and kind")
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(f"{e.message} (at /{'/'.join(map(str, e.path))})" for e in errors)
        raise ManifestError(f"{describe(obj)}: {problems}")


def validate(obj: dict, kubernetes_version: str) -> None:
    if is_custom_resource(obj):
        validate_custom_resource(obj)
    else:
        validate_builtin(obj, kubernetes_version)


def is_keda(obj: dict) -> bool:
    return obj.get("apiVersion", "").rpartition("/")[0] in KEDA_GROUPS


def validate_keda(objects: list[dict], kubernetes_version: str) -> list[str]:
    """Problems of KEDA objects, from one Node run over all of them."""
    result = subprocess.run(["node", str(KEDA_VALIDATOR)], input=json.dumps(objects), capture_output=True,
                            text=True, timeout=60, cwd=KEDA_VALIDATOR.parent)
    if result.returncode != 0:
        raise RuntimeError(f"the KEDA validator failed (run `make setup`?): {result.stderr.strip()}")
    problems = json.loads(result.stdout)
    for obj in objects:
        problems += _hpa_behavior_problems(obj, kubernetes_version)
    return problems


def _hpa_behavior_problems(obj: dict, kubernetes_version: str) -> list[str]:
    """KEDA copies spec.advanced.horizontalPodAutoscalerConfig.behavior into the HPA it creates."""
    behavior = obj.get("spec", {}).get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is None:
        return []
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "behavior"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "any"},
                    "maxReplicas": 1, "behavior": behavior}}
    try:
        validate_builtin(hpa, kubernetes_version)
    except ManifestError as err:
        return [f"{describe(obj)}: HPA behavior: {err}"]
    return []


def validate_all(objects: list[dict], kubernetes_version: str) -> list[str]:
    """Every problem of every object (empty when all validate)."""
    keda = [obj for obj in objects if is_keda(obj)]
    problems = validate_keda(keda, kubernetes_version) if keda else []
    for obj in objects:
        if is_keda(obj):
            continue
        try:
            validate(obj, kubernetes_version)
        except ManifestError as err:
            problems.append(str(err))
    return problems
