"""Every workload pod of the serving charts: non-root as the image's user, no privilege, a
read-only root filesystem, no capabilities, no Kubernetes token, failures in the status."""
from __future__ import annotations

import pytest

from stacks.workload.serving.manifests import workload_charts
from stacks.workload.serving.spec import IMAGE_USER
from tests.unit.stacks.workload.charts import HOLD, pod_spec, spec


@pytest.fixture(scope="module", params=["always-on", "scale-to-zero"])
def workloads(request) -> list[dict]:
    hold = HOLD if request.param == "scale-to-zero" else None
    objects = [o for chart in workload_charts(spec(scale_to_zero=hold)) for o in chart.to_json()]
    found = [o for o in objects if o["kind"] in ("Job", "Deployment")]
    assert len(found) == (3 if hold else 2)
    return found


def test_pods_run_restricted_as_the_images_user(workloads):
    for workload in workloads:
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == IMAGE_USER
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"] + pod.get("initContainers", []):
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsNonRoot"] is True


def test_a_failing_container_reports_its_reason_in_the_pod_status(workloads):
    for workload in workloads:
        pod = pod_spec(workload)
        for c in pod["containers"] + pod.get("initContainers", []):
            assert c["terminationMessagePolicy"] == "FallbackToLogsOnError", c["name"]
