"""KEDA scales the inference Deployment in both modes, on the servers' load and the job
queue's depth; at minReplicas 0 (acceptColdStarts) also from and to zero on a signal
that exists without pods (the gateway's received requests), and the gateway fronts
the endpoint. Each mode is synthesized once per session (tests/conftest.py), cdk-nag included."""
import json
import re


from sd21.contract import ServerEnv
from sd21.metric_names import GATEWAY_RECEIVED
from stacks.cluster.eks.cluster import SYSTEM_NODE_LABEL
from stacks.workload.autoscaling.autoscaling import KEDA_NAMESPACE
from tests.conftest import logical_id
from tests.support.validation import validate_all, validate_keda
from tests.integration.workload.conftest import export_value
from tests.support.k8s_objects import container, env, pod_spec


def test_every_object_validates(each_mode):
    objects = each_mode.objects
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "Ingress", "PodDisruptionBudget", "ScaledObject",
                                            "TriggerAuthentication"}
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in objects}, "KEDA creates and owns the HPA"
    assert validate_all(objects, each_mode.application.settings.cluster.kubernetes_version) == []


def test_the_keda_validator_really_checks():
    bad = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x", "namespace": "y"},
           "spec": {"minReplicaCount": "0", "cooldownPerod": 300,
                    "triggers": [{"type": "prometheus", "metadata": {"threshold": 2}, "metricTyp": "Value"}],
                    "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"policy": []}}}}}}
    problems = " ".join(validate_keda([bad], "1.35"))
    assert "must have required property scaleTargetRef" in problems
    assert "minReplicaCount must be integer" in problems
    assert "threshold must be string" in problems
    assert "data/spec/cooldownPerod is not a field of" in problems
    assert "data/spec/triggers/0/metricTyp is not a field of" in problems
    assert "HPA behavior:" in problems and "policy" in problems


def test_scaled_object_scales_the_deployment_on_the_server_load_and_the_job_queue(each_mode):
    """The stack's wiring: the settings' bounds, the Deployment and the queue the servers work
    (triggers, thresholds and behaviour from the chart's props: tests/unit/stacks/workload/autoscaling)."""
    settings = each_mode.application.settings
    deployment = each_mode.one("Deployment", "sd21-inference")
    scaled = each_mode.one("ScaledObject", "sd21-inference")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (settings.endpoint.min_replicas, settings.endpoint.max_replicas)
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count: a deploy must not reset it"
    triggers = {t["name"]: t for t in spec["triggers"]}
    server_env = ServerEnv.from_env(env(container(deployment, "server")))
    # The queue the servers work.
    assert triggers["queued-jobs"]["metadata"]["queueURL"] == server_env.jobs.queue_url
    assert triggers["pending-requests"]["metadata"]["threshold"] == str(settings.endpoint.target_pending_per_replica)
    if not settings.endpoint.scales_to_zero:
        assert set(triggers) == {"pending-requests", "queued-jobs"} and "cooldownPeriod" not in spec
        return
    assert spec["cooldownPeriod"] == settings.endpoint.scale_to_zero_after_seconds
    assert set(triggers) == {"pending-requests", "recent-requests", "queued-jobs"}


def test_the_gateway_counter_exists_before_the_first_request():
    from prometheus_client import CollectorRegistry

    from sd21.gateway import GatewayMetrics

    gateway = {sample.name: sample.value for family in GatewayMetrics(CollectorRegistry()).registry.collect()
               for sample in family.samples}
    # Exported at 0 before the first request, so increase() sees that request.
    assert gateway[GATEWAY_RECEIVED] == 0
    # That the queries name what the running pods expose: tests/system/pods/test_metrics_reach_cloudwatch.py.


def test_keda_is_installed_on_the_system_nodes_before_the_scaled_object(each_mode):
    workload = each_mode.application.workload
    resources = each_mode.template(workload)["Resources"]
    charts = {r["Properties"]["Chart"]: r["Properties"] for r in resources.values()
              if r["Type"] == "Custom::AWSCDK-EKS-HelmChart"}
    assert set(charts) == {"prometheus", "keda"}, "no prometheus-adapter: KEDA serves the metric"
    keda = charts["keda"]
    assert keda["Version"] == each_mode.application.settings.endpoint.keda_chart_version
    assert keda["Namespace"] == KEDA_NAMESPACE
    assert json.loads(keda["Values"]) == {"nodeSelector": dict([SYSTEM_NODE_LABEL])}
    assert keda["Wait"] is True, "the admission webhook must run before the ScaledObject is applied"
    depends = resources[logical_id(workload.autoscaling.scaled_object_manifest)]["DependsOn"]
    assert logical_id(workload.autoscaling.keda) in depends
    assert logical_id(workload.manifests.inference_manifest) in depends


def test_gateway_runs_always_on_system_nodes_with_no_right_but_publishing_its_metrics(zero):
    """The stack's side (its pod alone: tests/unit/stacks/workload/serving/test_gateway.py)."""
    gateway = zero.one("Deployment", "sd21-gateway")
    pod = pod_spec(gateway)
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    key, value = SYSTEM_NODE_LABEL
    assert terms == [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]
    assert pod["serviceAccountName"] == "sd21-gateway"
    resources = zero.template(zero.application.workload)["Resources"]
    (association,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EKS::PodIdentityAssociation"
                      and r["Properties"]["ServiceAccount"] == "sd21-gateway"]
    # The role lives beside the bucket (Storage stack); the association imports it.
    role_import = json.dumps(association["RoleArn"])
    assert "GatewayRole" in role_import
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
                and "GatewayRole" in json.dumps(r["Properties"]["Roles"])]
    actions = {json.dumps(s["Action"]) for p in policies for s in p["PolicyDocument"]["Statement"]}
    # Publish its counters and send jobs; its S3 rights (job requests) are beside the bucket.
    assert actions == {'"cloudwatch:PutMetricData"', '"sqs:SendMessage"'}


def test_gateway_image_is_the_stack_repository_at_the_gateway_tag(zero):
    storage = zero.application.storage
    image = container(zero.one("Deployment", "sd21-gateway"), "gateway")["image"]
    match = re.fullmatch(r".*\.dkr\.ecr\..*/(\$\{ImportValue:[^}]+\}):(.+)", image)
    assert match and match.group(2) == zero.application.settings.release.image_tag + "-gateway"
    repository_id = storage.get_logical_id(storage.repository.node.default_child)
    assert export_value(zero.template(storage), match.group(1)) == {"Ref": repository_id}
