"""Karpenter as the cluster stack builds it from the settings. The unit alone (interruption
queue and rules, controller IAM, Pod Identity, node role and access entry, Helm values) is
asserted in tests/unit/stacks/cluster/test_karpenter.py."""
import json

from tests.conftest import logical_id


def test_helm_release_is_the_settings_version_and_iam_is_scoped_to_the_settings_cluster(synthesized, application):
    resources = synthesized.template(application.cluster).to_json()["Resources"]
    karpenter = application.cluster.karpenter
    for chart in (karpenter.chart, karpenter.crd_chart):
        assert resources[logical_id(chart)]["Properties"]["Version"] == application.settings.versions.karpenter_version
    assert application.settings.versions.karpenter_version == "1.14.1"
    statements = [s for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"
                  and "Karpenter" in r["Properties"].get("Description", "")
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    (deletion,) = [s for s in statements if s["Sid"] == "AllowScopedDeletion"]
    assert f"kubernetes.io/cluster/{application.settings.cluster.cluster_name}" in json.dumps(deletion["Condition"])
