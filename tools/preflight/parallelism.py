"""How many Lambda executions one stack's deploy can hold at once, from its template.

CloudFormation starts a resource once everything it references (Ref, Fn::GetAtt, Fn::Sub,
DependsOn) is done, so custom resources with no dependency path between them may run
together. While one runs it holds Lambda executions:

- 2 when its ServiceToken is a CDK provider framework's onEvent function (Handler
  `framework.onEvent`; aws-eks-v2's kubectl provider is one): the framework invokes the
  user handler with `lambda.invoke` and no InvocationType, which is RequestResponse, and
  waits for it (aws-cdk-lib 2.275.0 custom-resources/lib/provider-framework/runtime/
  framework.js invokeUserFunction, outbound.js defaultInvokeFunction; botocore's lambda
  service model: RequestResponse is Invoke's default). Its isComplete waiter, when there is
  one, runs after onEvent has returned, so it adds nothing at the same time;
- 1 when it names another Lambda function of the template directly;
- 2 when the token comes from elsewhere (an import): counted as a provider, to be safe.

The need is the heaviest set of custom resources that are pairwise independent (a maximum
weight antichain of the dependency order), found with Dilworth's theorem: each resource
stands as as many copies as executions it holds, and the antichain's size is the number of
copies less a maximum matching of "must finish before" pairs.

Limits, honestly: this is an upper bound on what the template allows, not a measurement
(timing decides how many overlap in a real deploy); it counts one stack (the pipeline deploys
the Cluster stack by itself, after Network) and ignores other functions running in the
account, nested stacks, and reserved concurrency.
"""
from __future__ import annotations

import re
from pathlib import Path

FRAMEWORK_HANDLER = "framework.onEvent"
SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)[.}]")


def is_custom(resource: dict) -> bool:
    return resource["Type"].startswith("Custom::") or resource["Type"] == "AWS::CloudFormation::CustomResource"


def _references(node) -> set[str]:
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= set(SUB_NAME.findall(text))
                found |= _references(value[1:] if isinstance(value, list) else [])
            else:
                found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def dependencies(resources: dict) -> dict[str, set[str]]:
    """Each resource's direct dependencies within the template."""
    deps = {}
    for name, resource in resources.items():
        depends_on = resource.get("DependsOn", [])
        direct = _references(resource.get("Properties", {})) | set([depends_on] if isinstance(depends_on, str)
                                                                   else depends_on)
        deps[name] = direct & set(resources) - {name}
    return deps


def _ancestors(deps: dict[str, set[str]]) -> dict[str, set[str]]:
    """Everything each resource waits for, directly or not."""
    memo: dict[str, set[str]] = {}

    def visit(name: str) -> set[str]:
        if name not in memo:
            memo[name] = set()
            for dependency in deps[name]:
                memo[name] |= {dependency} | visit(dependency)
        return memo[name]

    return {name: visit(name) for name in deps}


def executions_held(resources: dict, custom: dict) -> int:
    token = custom.get("Properties", {}).get("ServiceToken")
    if isinstance(token, dict) and "Fn::GetAtt" in token:
        target = resources.get(_references(token).pop(), {})
        if target.get("Type") == "AWS::Lambda::Function":
            return 2 if target.get("Properties", {}).get("Handler") == FRAMEWORK_HANDLER else 1
    return 2


def _max_matching(edges: dict[int, list[int]], count: int) -> int:
    """Kuhn's augmenting paths on the bipartite graph copy-before -> copy-after."""
    matched_to: dict[int, int] = {}

    def augment(left: int, seen: set[int]) -> bool:
        for right in edges.get(left, []):
            if right not in seen:
                seen.add(right)
                if right not in matched_to or augment(matched_to[right], seen):
                    matched_to[right] = left
                    return True
        return False

    return sum(augment(left, set()) for left in range(count))


def concurrent_executions(template: dict) -> int:
    """The most Lambda executions the template's custom resources can hold at the same time."""
    resources = template.get("Resources", {})
    ancestors = _ancestors(dependencies(resources))
    copies = [name for name, r in resources.items() if is_custom(r) for _ in range(executions_held(resources, r))]
    edges = {i: [j for j, later in enumerate(copies) if before in ancestors[later]]
             for i, before in enumerate(copies)}
    return len(copies) - _max_matching(edges, len(copies))


def stack_name(path: Path) -> str:
    return Path(path).name.removesuffix(".template.json")
