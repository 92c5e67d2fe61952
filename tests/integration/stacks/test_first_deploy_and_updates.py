"""Findings that no offline deploy shows, each pinned on the synthesized templates:
the first `cdk deploy`, later updates and redeploys after a failed rollback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import rendering
from stacks.cluster.load_balancing.controller import IMAGE_REPOSITORY
from tests.conftest import logical_id

HELM = "Custom::AWSCDK-EKS-HelmChart"
MANIFEST = "Custom::AWSCDK-EKS-KubernetesResource"
KUBECTL_LAMBDA_SECONDS = 15 * 60


@pytest.fixture(scope="module")
def cluster_resources(synthesized, application) -> dict:
    return json.loads(synthesized.template_file(application.cluster).read_text())["Resources"]


def app_templates(synthesized) -> list[Path]:
    return sorted(synthesized.outdir.rglob("*.template.json"))


def _values(chart: dict) -> str:
    return rendering.placeholder(chart["Properties"]["Values"])


def test_the_load_balancer_webhook_cannot_reject_other_charts_services(cluster_resources, application):
    """LBC's Service mutator (failurePolicy Fail) rejected Karpenter's Service while its own
    pods were not ready, rolling the cluster back (aws-load-balancer-controller#4140)."""
    cluster = application.cluster
    lbc = cluster_resources[logical_id(cluster.alb_controller.chart)]
    values = json.loads(_values(lbc))
    assert values["enableServiceMutatorWebhook"] is False
    karpenter = cluster_resources[logical_id(cluster.karpenter.chart)]
    assert logical_id(cluster.alb_controller.chart) in karpenter["DependsOn"]


def test_no_load_balancer_service_anywhere(synthesized):
    for path in app_templates(synthesized):
        for obj in rendering.all_objects(rendering.from_template_file(path)):
            assert not (obj["kind"] == "Service" and obj["spec"].get("type") == "LoadBalancer"), path.name


def test_every_helm_release_fails_fast_and_lbc_pulls_from_a_regional_registry(synthesized, cluster_resources,
                                                                              application):
    charts = [r for path in app_templates(synthesized)
              for r in json.loads(path.read_text())["Resources"].values() if r["Type"] == HELM]
    assert len(charts) >= 4
    for chart in charts:
        timeout = chart["Properties"].get("Timeout")
        assert timeout and int(timeout.removesuffix("s")) < KUBECTL_LAMBDA_SECONDS / 2, chart["Properties"]["Chart"]
    lbc = json.loads(_values(cluster_resources[logical_id(application.cluster.alb_controller.chart)]))
    assert lbc["image"] == {"repository": IMAGE_REPOSITORY, "tag": application.settings.versions.alb_controller_version}
    assert IMAGE_REPOSITORY.startswith("public.ecr.aws/")


def test_no_oidc_provider_the_controllers_use_pod_identity(cluster_resources, application):
    types = {r["Type"] for r in cluster_resources.values()}
    assert not {t for t in types if "OpenIdConnect" in t or t == "AWS::IAM::OIDCProvider"}
    lbc = application.cluster.alb_controller
    association = cluster_resources[logical_id(lbc.pod_identity.association)]["Properties"]
    assert (association["Namespace"], association["ServiceAccount"]) == ("kube-system", "aws-load-balancer-controller")
    values = json.loads(_values(cluster_resources[logical_id(lbc.chart)]))
    assert values["serviceAccount"] == {"create": True, "name": "aws-load-balancer-controller"}
    assert logical_id(lbc.pod_identity.effective) in cluster_resources[logical_id(lbc.chart)]["DependsOn"]


def test_karpenter_lists_instance_profiles_unscoped_and_gets_them_scoped(cluster_resources):
    statements = [s for r in cluster_resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    by_sid = {s.get("Sid"): s for s in statements}
    listing = by_sid["AllowUnscopedInstanceProfileListAction"]
    assert listing["Action"] == "iam:ListInstanceProfiles" and listing["Resource"] == "*"
    assert by_sid["AllowInstanceProfileReadActions"]["Action"] == "iam:GetInstanceProfile"
    others = [s for s in statements if s is not listing]
    assert not [s for s in others if "iam:ListInstanceProfiles" in json.dumps(s["Action"])]


def test_karpenter_crds_come_from_their_chart_and_the_controller_has_1gi(cluster_resources, application):
    karpenter = application.cluster.karpenter
    crds = cluster_resources[logical_id(karpenter.crd_chart)]["Properties"]
    assert (crds["Chart"], crds["Repository"]) == ("karpenter-crd", "oci://public.ecr.aws/karpenter/karpenter-crd")
    chart = cluster_resources[logical_id(karpenter.chart)]
    assert crds["Version"] == chart["Properties"]["Version"]
    assert chart["Properties"]["SkipCrds"] is True
    assert logical_id(karpenter.crd_chart) in chart["DependsOn"]
    resources = json.loads(_values(chart))["controller"]["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == "1Gi"


def test_names_cloudformation_must_be_free_to_replace(cluster_resources):
    (nodegroup,) = [r for r in cluster_resources.values() if r["Type"] == "AWS::EKS::Nodegroup"]
    assert "NodegroupName" not in nodegroup["Properties"]


def test_every_manifest_is_applied_with_overwrite(synthesized):
    manifests = [(path.name, r) for path in app_templates(synthesized)
                 for r in json.loads(path.read_text())["Resources"].values() if r["Type"] == MANIFEST]
    assert len(manifests) >= 8
    assert [name for name, r in manifests if r["Properties"].get("Overwrite") is not True] == []


def test_operators_reach_the_private_endpoint_from_a_vpc_shell(synthesized, application, cluster_resources):
    """With the default private endpoint, a CloudShell VPC environment with this group runs kubectl."""
    eks = application.cluster.eks
    group_id = logical_id(eks.operator_security_group)
    (ingress,) = [r["Properties"] for r in cluster_resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"
                  and r["Properties"].get("SourceSecurityGroupId") == {"Fn::GetAtt": [group_id, "GroupId"]}]
    assert (ingress["IpProtocol"], ingress["FromPort"], ingress["ToPort"]) == ("tcp", 443, 443)
    assert ingress["GroupId"] == {"Fn::GetAtt": [logical_id(eks.cluster), "ClusterSecurityGroupId"]}
    outputs = json.loads(synthesized.template_file(application.cluster).read_text())["Outputs"]
    assert {"OperatorSecurityGroupId", "OperatorSubnetIds", "KubeconfigCommand"} <= set(outputs)


def test_workload_calls_no_lambda_of_another_stack(synthesized, application, cluster_resources):
    """A CDK upgrade that replaces the Cluster stack's kubectl Lambda must not block on an
    export the Workload stack uses: the Workload has its own provider."""
    template = json.loads(synthesized.template_file(application.workload).read_text())
    resources = template["Resources"]
    imports = {json.dumps(v) for v in _find(template, "Fn::ImportValue")}
    exported = json.loads(synthesized.template_file(application.cluster).read_text())["Outputs"]
    cluster_exports = {o["Export"]["Name"]: o["Value"] for o in exported.values() if "Export" in o}
    used = [cluster_exports[name] for name in cluster_exports if any(name in i for i in imports)]
    kinds = {cluster_resources[v["Ref"] if "Ref" in v else v["Fn::GetAtt"][0]]["Type"] for v in used}
    assert kinds <= {"AWS::EKS::Cluster"}, kinds  # its name and security group, nothing else
    for resource in resources.values():
        if resource["Type"].startswith("Custom::"):
            token = resource["Properties"]["ServiceToken"]
            assert "Fn::GetAtt" in token and token["Fn::GetAtt"][0] in resources
    kubectl = application.workload.kubectl
    access = resources[logical_id(kubectl.access)]
    assert access["Properties"]["PrincipalArn"] == {"Fn::GetAtt": [
        logical_id(kubectl.provider.node.find_child("Handler").role), "Arn"]}
    manifests = [r for r in resources.values() if r["Type"] in (MANIFEST, HELM)]
    assert manifests and all(logical_id(kubectl.access) in r["DependsOn"] for r in manifests)


def _find(node, key):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            else:
                yield from _find(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _find(item, key)



# --- renames: CloudFormation creates the new custom resource, then deletes the old ---

# Every Kubernetes custom resource of the app, by stack and logical id. A changed id is a
# Remove in the change set: `helm uninstall` or `kubectl delete` of objects the new
# resource has just taken over. Change this list only together with a migration note.
PINNED_KUBERNETES_RESOURCES = {
    "Cluster": {
        "KarpenterCrdChart70DB6642", "KarpenterChartE18CC5FC", "LoadBalancerControllerChartE487422F",
        "Inf2Inf2NodeClass0BD973F7", "Inf2Inf2NodePoolC62409E4",
        "NeuronNeuronDevicePlugin65920E4B", "NeuronNeuronSchedulerExtensionFAD511F5", "NeuronMySchedulerE98B359B",
    },
    "Workload": {
        "ManifestsIdentities81EA430C", "ManifestsCompileJobEE8430E3", "ManifestsInference51B99080",
        "AutoscalingPrometheusB038F66E", "AutoscalingKedaA6AC34C5", "AutoscalingScaledObject0657D15F",
        "ColdStartPhasesManifest786519D8",
    },
}


def kubernetes_resources(synthesized, stack) -> dict[str, dict]:
    resources = json.loads(synthesized.template_file(stack).read_text())["Resources"]
    return {k: r for k, r in resources.items() if r["Type"].startswith("Custom::AWSCDK-EKS-")
            and r["Type"] in (HELM, MANIFEST)}


def test_no_kubernetes_resource_is_renamed(synthesized, application):
    """A renamed KubernetesManifest or HelmChart uninstalls what it installed: ids are pinned."""
    stacks = {"Cluster": application.cluster, "Workload": application.workload}
    found = {name: set(kubernetes_resources(synthesized, stack)) for name, stack in stacks.items()}
    assert found == PINNED_KUBERNETES_RESOURCES
    other = [s.stack_name for s in application.stacks if s not in stacks.values()
             and kubernetes_resources(synthesized, s)]
    assert not other, f"Kubernetes resources in stacks whose ids are not pinned: {other}"


def _kinds(resource: dict) -> set[str]:
    if resource["Type"] != MANIFEST:
        return set()
    return {o.get("kind") for o in rendering.manifest_objects(resource["Properties"]["Manifest"])}


def test_what_would_take_the_workload_or_the_nodes_down_survives_its_removal(synthesized, application):
    """Found by content: the release that installs Karpenter's CRDs (uninstall deletes every
    NodePool, EC2NodeClass and NodeClaim), the manifest holding a Namespace (delete removes
    all in it) and those holding a NodePool or EC2NodeClass (delete terminates their nodes)."""
    destructive = set()
    for stack in (application.cluster, application.workload):
        for resource_id, resource in kubernetes_resources(synthesized, stack).items():
            if (resource["Type"] == HELM and resource["Properties"]["Chart"] == "karpenter-crd") or \
                    _kinds(resource) & {"Namespace", "NodePool", "EC2NodeClass", "CustomResourceDefinition"}:
                destructive.add(resource_id)
                assert resource.get("DeletionPolicy") == "Retain", resource_id
                assert resource.get("UpdateReplacePolicy") == "Retain", resource_id
    assert {"KarpenterCrdChart70DB6642", "ManifestsIdentities81EA430C", "Inf2Inf2NodePoolC62409E4",
            "Inf2Inf2NodeClass0BD973F7"} <= destructive


def test_groups_the_load_balancer_controller_writes_to_have_no_inline_rules(synthesized, application):
    """LBC adds ingress rules to the node group tagged kubernetes.io/cluster/<name>: owned.
    Inline rules are rewritten whole by CloudFormation, revoking LBC's (cfn-language-discussion#157)."""
    tag = f"kubernetes.io/cluster/{application.settings.cluster.cluster_name}"
    groups = []
    for template in app_templates(synthesized):
        for resource_id, resource in json.loads(template.read_text())["Resources"].items():
            if resource["Type"] != "AWS::EC2::SecurityGroup":
                continue
            if any(t["Key"] == tag for t in resource["Properties"].get("Tags", [])):
                groups.append(resource_id)
                assert "SecurityGroupIngress" not in resource["Properties"], resource_id
                assert "SecurityGroupEgress" not in resource["Properties"], resource_id
    assert groups, f"no security group tagged {tag}"
