"""Every Kubernetes object the app deploys, read back from the synthesized CloudFormation.

The objects live in the `Manifest` property of Custom::AWSCDK-EKS-KubernetesResource
resources: a JSON string, or an Fn::Join when a value is only known at deploy time
(a role name, a queue name). Tokens become readable placeholders
(`${Ref:LogicalId}`, `${GetAtt:LogicalId.Attr}`) so the result parses as JSON,
can be validated, joined against the templates in tests, and written as YAML.
Helm releases (Custom::AWSCDK-EKS-HelmChart) are not rendered: helm does that.

    python -m tools.rendering <cdk.out dir> <dest dir>

writes one multi-document YAML file per manifest resource, numbered in
deployment order (CloudFormation DependsOn), so `kubectl apply -f <dest>`
applies them in the same order as a deploy.

    python -m tools.rendering diff <deployed template | --deployed-stack NAME> <proposed template>

prints what a change set does to the cluster, readably: every Kubernetes object
and Helm release (chart, version, values) added, removed or changed, as a unified
diff of YAML (a CloudFormation change set shows each as one opaque JSON string).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

MANIFEST_TYPE = "Custom::AWSCDK-EKS-KubernetesResource"
HELM_TYPE = "Custom::AWSCDK-EKS-HelmChart"


@dataclass(frozen=True)
class ManifestResource:
    """One manifest custom resource and the Kubernetes objects it applies."""

    stack: str
    logical_id: str
    path: str  # the construct path (aws:cdk:path) where the template has it, else the logical id
    depends_on: tuple[str, ...]
    objects: tuple[dict, ...]


def placeholder(token: Any) -> str:
    """A readable stand-in for a CloudFormation intrinsic inside a manifest."""
    if isinstance(token, str):
        return token
    if isinstance(token, dict) and len(token) == 1:
        (function, argument), = token.items()
        if function == "Ref":
            return f"${{Ref:{argument}}}"
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return f"${{GetAtt:{logical_id}.{attribute}}}"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(placeholder(part) for part in parts)
        if function == "Fn::ImportValue" and isinstance(argument, str):
            # Export names are plain names: they say which stack's value this is.
            return f"${{ImportValue:{argument}}}"
        # Other intrinsics (Fn::Select, ...) keep only their name: their
        # arguments could hold quotes that would break the surrounding JSON.
        return f"${{{function}}}"
    raise ValueError(f"unexpected value in a manifest: {token!r}")


def manifest_objects(manifest: Any) -> list[dict]:
    objects = json.loads(placeholder(manifest))
    return objects if isinstance(objects, list) else [objects]


def manifest_resources(template: dict, stack: str) -> list[ManifestResource]:
    result = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != MANIFEST_TYPE:
            continue
        depends_on = resource.get("DependsOn", [])
        result.append(ManifestResource(
            stack=stack,
            logical_id=logical_id,
            path=resource.get("Metadata", {}).get("aws:cdk:path", logical_id),
            depends_on=tuple([depends_on] if isinstance(depends_on, str) else depends_on),
            objects=tuple(manifest_objects(resource["Properties"]["Manifest"])),
        ))
    return _deployment_order(result)


def _deployment_order(resources: list[ManifestResource]) -> list[ManifestResource]:
    """Topological order by DependsOn among the manifests (stable otherwise)."""
    by_id = {r.logical_id: r for r in resources}
    ordered: list[ManifestResource] = []
    seen: set[str] = set()

    def visit(resource: ManifestResource) -> None:
        if resource.logical_id in seen:
            return
        seen.add(resource.logical_id)
        for dependency in resource.depends_on:
            if dependency in by_id:
                visit(by_id[dependency])
        ordered.append(resource)

    for resource in resources:
        visit(resource)
    return ordered


def from_template_file(path: Path) -> list[ManifestResource]:
    stack = Path(path).name.removesuffix(".template.json")
    return manifest_resources(json.loads(Path(path).read_text()), stack)


def from_cloud_assembly(outdir: Path) -> list[ManifestResource]:
    """The manifests of the app's stacks in a cdk.out folder (not nested stage assemblies,
    which hold the release pipeline's copies of the same stacks)."""
    resources = []
    for template in sorted(Path(outdir).glob("*.template.json")):
        resources += from_template_file(template)
    return resources


def all_objects(resources: Iterable[ManifestResource]) -> list[dict]:
    return [obj for resource in resources for obj in resource.objects]


def write_yaml(resources: list[ManifestResource], dest: Path) -> list[Path]:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.yaml"):
        old.unlink()
    written = []
    for index, resource in enumerate(resources, start=1):
        path = dest / f"{index:02d}-{resource.stack}-{resource.logical_id}.yaml"
        header = f"# {resource.stack} {resource.path}\n"
        path.write_text(header + yaml.safe_dump_all(resource.objects, sort_keys=False))
        written.append(path)
    return written


def helm_releases(template: dict) -> dict[str, dict]:
    """Each Helm release of a template: namespace/release -> chart, repository, version, values."""
    releases = {}
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != HELM_TYPE:
            continue
        props = resource["Properties"]
        values = props.get("Values")
        releases[f"{props.get('Namespace', 'default')}/{props['Release']}"] = {
            "chart": props.get("Chart"), "repository": props.get("Repository"), "version": props.get("Version"),
            "values": json.loads(placeholder(values)) if values is not None else {},
        }
    return releases


def _objects_by_name(template: dict) -> dict[str, dict]:
    objects = {}
    for obj in all_objects(manifest_resources(template, "stack")):
        meta = obj.get("metadata", {})
        objects[f"{obj['kind']} {meta.get('namespace', '-')}/{meta.get('name')}"] = obj
    return objects


def _yaml_diff(name: str, old, new) -> list[str]:
    import difflib

    def lines(value) -> list[str]:
        return [] if value is None else yaml.safe_dump(value, sort_keys=True).splitlines()

    return list(difflib.unified_diff(lines(old), lines(new), f"deployed/{name}", f"proposed/{name}", lineterm=""))


def diff_templates(deployed: dict, proposed: dict) -> str:
    """Readable diff of the Kubernetes objects and Helm releases of two templates."""
    out: list[str] = []
    for title, old, new in (("Kubernetes objects", _objects_by_name(deployed), _objects_by_name(proposed)),
                            ("Helm releases", helm_releases(deployed), helm_releases(proposed))):
        added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
        changed = sorted(name for name in set(old) & set(new) if old[name] != new[name])
        out.append(f"## {title}: {len(added)} added, {len(removed)} removed, {len(changed)} changed, "
                   f"{len(set(old) & set(new)) - len(changed)} unchanged")
        for name in removed:
            out += [f"- removed {name}", *_yaml_diff(name, old[name], None)]
        for name in added:
            out += [f"+ added {name}", *_yaml_diff(name, None, new[name])]
        for name in changed:
            out += [f"~ changed {name}", *_yaml_diff(name, old[name], new[name])]
    return "\n".join(out) + "\n"


# A stack in this state holds only the change set CDK Pipelines' Prepare created: "no
# template is available during the time the stack is in that state" (aws-cdk CLI README),
# and the CLI never calls GetTemplate on it. Nothing of it is deployed yet.
NOTHING_DEPLOYED = frozenset({"REVIEW_IN_PROGRESS"})


def deployed_template(stack_name: str, client=None) -> dict:
    """The template a stack runs now: empty when none is deployed yet (no stack, a stack
    created for its first change set, or an answer without a template body)."""
    from botocore.exceptions import ClientError

    if client is None:
        import boto3

        client = boto3.client("cloudformation")
    try:
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return {}
        raise
    if not stacks or stacks[0]["StackStatus"] in NOTHING_DEPLOYED:
        return {}
    text = client.get_template(StackName=stack_name, TemplateStage="Original").get("TemplateBody")
    if not text:
        return {}
    return text if isinstance(text, dict) else json.loads(text)


def diff_main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--deployed-stack":
        deployed, proposed = deployed_template(argv[1]), Path(argv[2])
    elif len(argv) == 2:
        deployed, proposed = json.loads(Path(argv[0]).read_text()), Path(argv[1])
    else:
        print("usage: python -m tools.rendering diff <deployed template | --deployed-stack NAME> "
              "<proposed template>", file=sys.stderr)
        return 2
    sys.stdout.write(diff_templates(deployed, json.loads(proposed.read_text())))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["diff"]:
        return diff_main(argv[1:])
    if len(argv) != 2:
        print("usage: python -m tools.rendering <cdk.out dir> <dest dir>", file=sys.stderr)
        return 2
    outdir, dest = map(Path, argv)
    if not any(outdir.glob("*.template.json")):
        print(f"error: no *.template.json in {outdir}; run `cdk synth` first", file=sys.stderr)
        return 1
    resources = from_cloud_assembly(outdir)
    written = write_yaml(resources, dest)
    print(f"{len(all_objects(resources))} objects in {len(written)} files under {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
