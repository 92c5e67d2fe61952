"""KEDA scales the inference Deployment in both modes, on the servers' load and the job
queue's depth; at minReplicas 0 (acceptColdStarts) also from and to zero on a signal
that exists without pods (the gateway's received requests), and the gateway fronts
the endpoint. Each mode is synthesized once per session (tests/conftest.py), cdk-nag included."""
import json
import re


from stacks.workload.serving.gateway import METRICS_PORT
from stacks.workload.serving.spec import HEALTH_PATH
from sd21.metric_names import GATEWAY_RECEIVED, INFLIGHT_REQUESTS
from stacks.cluster.eks.cluster import SYSTEM_NODE_LABEL
from stacks.workload.autoscaling.autoscaling import KEDA_NAMESPACE
from tests.conftest import logical_id
from tests.k8s.validation import validate_all, validate_keda
from tests.workload.conftest import export_value
from tests.workload.test_manifests import container, env, pod_spec


def test_every_object_validates(each_mode):
    objects = each_mode.objects
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "Ingress", "PodDisruptionBudget", "ScaledObject",
                                            "TriggerAuthentication"}
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in objects}, "KEDA creates and owns the HPA"
    assert validate_all(objects, each_mode.application.settings.kubernetes_version) == []


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
    settings = each_mode.application.settings
    deployment = each_mode.one("Deployment", "sd21-inference")
    scaled = each_mode.one("ScaledObject", "sd21-inference")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (settings.min_replicas, settings.max_replicas)
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count: a deploy must not reset it"
    triggers = {t["name"]: t for t in spec["triggers"]}
    namespace = deployment["metadata"]["namespace"]
    # Jobs: the queue's depth (it exists without pods), read with the KEDA operator's identity.
    jobs = triggers.pop("queued-jobs")
    assert jobs["type"] == "aws-sqs-queue" and jobs["metadata"]["activationQueueLength"] == "0"
    server_env = env(container(deployment, "server"))
    assert jobs["metadata"]["queueURL"] == server_env["SD21_JOBS_QUEUE_URL"]  # the queue the servers work
    assert int(jobs["metadata"]["queueLength"]) >= 1
    (authentication,) = [o for o in each_mode.objects if o["kind"] == "TriggerAuthentication"]
    assert jobs["authenticationRef"] == {"name": authentication["metadata"]["name"]}
    assert authentication["metadata"]["namespace"] == namespace
    assert authentication["spec"] == {"podIdentity": {"provider": "aws"}}
    for trigger in triggers.values():
        assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
        assert trigger["metadata"]["activationThreshold"] == "0"
    # Load: the servers' own gauge, targetPendingPerReplica each.
    load = triggers.pop("pending-requests")["metadata"]
    assert load["threshold"] == str(settings.target_pending_per_replica)
    assert load["query"] == f'sum({INFLIGHT_REQUESTS}{{namespace="{namespace}"}}) or vector(0)'
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0, "load is followed up at once"
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300, "nodes take minutes to come back"
    if not settings.scales_to_zero:
        assert triggers == {} and "cooldownPeriod" not in spec
        return
    assert spec["cooldownPeriod"] == settings.scale_to_zero_after_seconds
    # Activity: exists without pods (the gateway counts), wakes or keeps exactly one replica.
    activity = triggers.pop("recent-requests")["metadata"]
    assert triggers == {}
    assert activity["threshold"] == "1"
    assert activity["query"].startswith(f'clamp_max(sum(increase({GATEWAY_RECEIVED}{{namespace="{namespace}"}}[')
    assert activity["query"].endswith("), 1) or vector(0)")


def test_the_gateway_counter_exists_before_the_first_request():
    from prometheus_client import CollectorRegistry

    from sd21.gateway import GatewayMetrics

    gateway = {sample.name: sample.value for family in GatewayMetrics(CollectorRegistry()).registry.collect()
               for sample in family.samples}
    # Exported at 0 before the first request, so increase() sees that request.
    assert gateway[GATEWAY_RECEIVED] == 0
    # That the queries name what the running pods expose: tests/pods/test_metrics_reach_cloudwatch.py.


def test_keda_is_installed_on_the_system_nodes_before_the_scaled_object(each_mode):
    workload = each_mode.application.workload
    resources = each_mode.template(workload)["Resources"]
    charts = {r["Properties"]["Chart"]: r["Properties"] for r in resources.values()
              if r["Type"] == "Custom::AWSCDK-EKS-HelmChart"}
    assert set(charts) == {"prometheus", "keda"}, "no prometheus-adapter: KEDA serves the metric"
    keda = charts["keda"]
    assert keda["Version"] == each_mode.application.settings.keda_chart_version
    assert keda["Namespace"] == KEDA_NAMESPACE
    assert json.loads(keda["Values"]) == {"nodeSelector": dict([SYSTEM_NODE_LABEL])}
    assert keda["Wait"] is True, "the admission webhook must run before the ScaledObject is applied"
    depends = resources[logical_id(workload.autoscaling.scaled_object_manifest)]["DependsOn"]
    assert logical_id(workload.autoscaling.keda) in depends
    assert logical_id(workload.manifests.inference_manifest) in depends


def test_ingress_goes_through_the_gateway_to_the_inference_service(zero):
    ingress = zero.one("Ingress", "sd21-inference")
    gateway, gateway_service = zero.one("Deployment", "sd21-gateway"), zero.one("Service", "sd21-gateway")
    inference_service = zero.one("Service", "sd21-inference")
    backend = ingress["spec"]["defaultBackend"]["service"]
    port = gateway_service["spec"]["ports"][0]
    assert backend == {"name": "sd21-gateway", "port": {"number": port["port"]}}
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert gateway_service["spec"]["selector"].items() <= labels.items()
    assert port["targetPort"] == container(gateway, "gateway")["ports"][0]["containerPort"]
    # The gateway forwards to the inference Service by its DNS name and port.
    namespace = inference_service["metadata"]["namespace"]
    upstream = env(container(gateway, "gateway"))["SD21_UPSTREAM"]
    assert upstream == (f"http://{inference_service['metadata']['name']}.{namespace}.svc:"
                        f"{inference_service['spec']['ports'][0]['port']}")
    # The ALB health check hits the gateway's own /health, which answers at zero replicas.
    assert ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/healthcheck-path"] == HEALTH_PATH
    assert container(gateway, "gateway")["readinessProbe"]["httpGet"]["path"] == HEALTH_PATH
    budget = zero.one("PodDisruptionBudget", "sd21-gateway")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_gateway_runs_always_on_system_nodes_with_no_right_but_publishing_its_metrics(zero):
    gateway = zero.one("Deployment", "sd21-gateway")
    pod = pod_spec(gateway)
    assert gateway["spec"]["replicas"] >= 2
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    key, value = SYSTEM_NODE_LABEL
    assert terms == [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]
    assert pod["automountServiceAccountToken"] is False
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
    gateway_container = container(gateway, "gateway")
    security = gateway_container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"] and security["capabilities"] == {
        "drop": ["ALL"]}
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert METRICS_PORT in {p["containerPort"] for p in gateway_container["ports"]}


def test_gateway_image_is_the_stack_repository_at_the_gateway_tag(zero):
    storage = zero.application.storage
    image = container(zero.one("Deployment", "sd21-gateway"), "gateway")["image"]
    match = re.fullmatch(r".*\.dkr\.ecr\..*/(\$\{ImportValue:[^}]+\}):(.+)", image)
    assert match and match.group(2) == zero.application.settings.image_tag + "-gateway"
    repository_id = storage.get_logical_id(storage.repository.node.default_child)
    assert export_value(zero.template(storage), match.group(1)) == {"Ref": repository_id}
