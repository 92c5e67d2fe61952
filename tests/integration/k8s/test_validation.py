"""Every rendered object validates: Kubernetes OpenAPI (strict) or the vendored Karpenter CRDs."""
import copy
import hashlib

import pytest

from stacks.settings import KARPENTER_MINOR
from tests.support import validation


def test_every_rendered_object_validates(objects, application):
    kinds = {o["kind"] for o in objects}
    assert {"DaemonSet", "Deployment", "Service", "ConfigMap", "ClusterRole", "EC2NodeClass", "NodePool"} <= kinds
    assert validation.validate_all(objects, application.settings.cluster.kubernetes_version) == []


def test_builtin_kinds_use_the_schema_of_the_cluster_version(objects, application):
    version = application.settings.cluster.kubernetes_version
    used = {validation.validate_builtin(o, version) for o in objects if not validation.is_custom_resource(o)}
    assert used == {version}, "kubernetes-validate lacks this version's schemas: it fell back to an older one"


def test_unknown_field_in_a_builtin_object_is_an_error(find, application):
    deployment = copy.deepcopy(find("Deployment", "my-scheduler"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(validation.ManifestError, match="livenesProbe"):
        validation.validate(deployment, application.settings.cluster.kubernetes_version)


@pytest.mark.parametrize("kind, mutate, message", [
    ("NodePool", lambda o: o["spec"]["template"]["spec"].update(expireAftr="1h"), "expireAftr"),
    ("NodePool", lambda o: o["spec"]["disruption"].update(consolidationPolicy="Sometimes"), "Sometimes"),
    ("EC2NodeClass", lambda o: o["spec"]["metadataOptions"].update(httpTokens="optionl"), "optionl"),
    ("EC2NodeClass", lambda o: o["spec"].pop("amiSelectorTerms"), "amiSelectorTerms"),
])
def test_karpenter_objects_are_checked_against_the_crd(find, application, kind, mutate, message):
    obj = copy.deepcopy(find(kind, "inf2"))
    validation.validate(obj, application.settings.cluster.kubernetes_version)
    mutate(obj)
    with pytest.raises(validation.ManifestError, match=message):
        validation.validate(obj, application.settings.cluster.kubernetes_version)


def test_vendored_crds_are_unmodified_and_of_the_pinned_karpenter_minor():
    served = set(validation.crd_schemas())
    assert ("karpenter.sh/v1", "NodePool") in served and ("karpenter.k8s.aws/v1", "EC2NodeClass") in served
    source = (validation.CRD_DIR / "SOURCE.md").read_text()
    assert f"Release tag: v{KARPENTER_MINOR}." in source
    for path in validation.CRD_DIR.glob("*.yaml"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"{digest}  {path.name}" in source, f"{path.name} differs from the provenance in SOURCE.md"
