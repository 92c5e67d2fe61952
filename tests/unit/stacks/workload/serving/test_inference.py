"""The inference chart alone: the Deployment's env, probes and grace from its props, the
Service, Ingress and PodDisruptionBudget around it, and the gateway only at scale to zero."""
from __future__ import annotations

from dataclasses import replace

from sd21.contract import CloudWatchEnv, JobsEnv, ServerEnv, StageEnv

from stacks.workload.serving.inference import UNHEALTHY_EXIT_DELAY_SECONDS, InferenceChart, ingress_annotations
from stacks.workload.serving.spec import (
    DEREGISTRATION_DELAY_SECONDS, MODEL_DIR, SERVE_PORT, IngressAccess, WorkloadSpec,
)
from tests.unit.stacks.workload.charts import (
    ENDPOINT, HOLD, MODEL, QUEUE_URL, app_with_identities, container, env, one, pod_spec, spec, told,
)


def _objects(workload: WorkloadSpec) -> list[dict]:
    app, identities = app_with_identities()
    return InferenceChart(app, "inference", spec=workload, identities=identities).to_json()


def _server(objects: list[dict]) -> dict:
    return container(one(objects, "Deployment", "sd21-inference"), "server")


def test_the_server_is_told_the_endpoint_props():
    """As sd21-serve parses its env: the props, the model, the bucket, the queue and the cluster."""
    endpoint = replace(ENDPOINT, queue_size=7, request_timeout_seconds=123, device_failures_before_restart=5,
                       hang_factor=4, hang_minimum_seconds=9)
    assert told(_server(_objects(spec(endpoint=endpoint))), ServerEnv) == ServerEnv(
        backend="neuron", model_dir=MODEL_DIR, model_version=MODEL.version, model_name=MODEL.name, port=SERVE_PORT,
        queue_size=7, request_timeout_s=123, drain_grace_s=123, max_consecutive_failures=5, watchdog_factor=4,
        watchdog_min_s=9, unhealthy_exit_delay_s=UNHEALTHY_EXIT_DELAY_SECONDS,
        jobs=JobsEnv(queue_url=QUEUE_URL, bucket="sd21-models-example"), cloudwatch=CloudWatchEnv(cluster="sd21-inf2"))


def test_the_stage_is_told_the_model_the_server_loads():
    deployment = one(_objects(spec()), "Deployment", "sd21-inference")
    stage, server = told(container(deployment, "stage"), StageEnv), told(container(deployment, "server"), ServerEnv)
    assert stage == StageEnv(backend="neuron", bucket="sd21-models-example", model_name=MODEL.name,
                             model_version=MODEL.version, model_dir=MODEL_DIR)
    assert (stage.model_dir, stage.model_version) == (server.model_dir, server.model_version)


def test_grace_covers_the_deregistration_delay_and_the_drain():
    for timeout in (6, 60, 600):
        objects = _objects(spec(endpoint=replace(ENDPOINT, request_timeout_seconds=timeout)))
        deployment = one(objects, "Deployment", "sd21-inference")
        server = container(deployment, "server")
        assert server["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(DEREGISTRATION_DELAY_SECONDS)]
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] == DEREGISTRATION_DELAY_SECONDS + timeout + 15
        annotations = one(objects, "Ingress")["metadata"]["annotations"]
        assert annotations["alb.ingress.kubernetes.io/load-balancer-attributes"] == \
            f"idle_timeout.timeout_seconds={timeout + 30}"


def test_probes_exist_in_the_server_openapi_document():
    from sd21.server import openapi_document

    paths = openapi_document()["paths"]
    server = _server(_objects(spec()))
    port = server["ports"][0]["containerPort"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = server[probe]["httpGet"]
        assert get["path"] in paths and "get" in paths[get["path"]], probe
        assert get["port"] == port
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert server["startupProbe"]["httpGet"]["path"] == "/ready", "a failed load must end in a restart"
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"


def test_stage_init_container_feeds_the_server_through_an_empty_dir():
    deployment = one(_objects(spec()), "Deployment", "sd21-inference")
    stage, server = container(deployment, "stage"), container(deployment, "server")
    assert stage["command"] == ["sd21-stage"] and server["command"] == ["sd21-serve"]
    assert stage["image"] == server["image"] == "registry.example/sd21:commit-a"
    model_dir = told(server, ServerEnv).model_dir
    stage_mount = next(m for m in stage["volumeMounts"] if m["mountPath"] == model_dir)
    server_mount = next(m for m in server["volumeMounts"] if m["mountPath"] == model_dir)
    assert stage_mount["name"] == server_mount["name"] and server_mount.get("readOnly") is True
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == stage_mount["name"])
    assert "emptyDir" in volume


def test_serving_is_offline_spread_softly_and_left_to_keda():
    deployment = one(_objects(spec()), "Deployment", "sd21-inference")
    server_env = env(container(deployment, "server"))
    assert server_env["HF_HUB_OFFLINE"] == "1" and server_env["TRANSFORMERS_OFFLINE"] == "1"
    assert server_env["GRADIO_ANALYTICS_ENABLED"] == "False"
    pod = pod_spec(deployment)
    assert "podAntiAffinity" not in pod.get("affinity", {}), "a hard anti-affinity caps replicas at the AZ count"
    assert pod["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}}]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count: a deploy must not reset it"


def test_service_ingress_and_disruption_budget_join():
    objects = _objects(spec())
    deployment, service, ingress = one(objects, "Deployment"), one(objects, "Service"), one(objects, "Ingress")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port = service["spec"]["ports"][0]
    assert port["targetPort"] == container(deployment, "server")["ports"][0]["containerPort"]
    backend = ingress["spec"]["defaultBackend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"number": port["port"]}}
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # A drain (drift to a new AMI, consolidation) never evicts the last ready replica.
    assert budget["spec"]["minAvailable"] == 1 and "maxUnavailable" not in budget["spec"]


def test_ingress_health_check_and_draining_line_up():
    objects = _objects(spec())
    deployment, ingress = one(objects, "Deployment"), one(objects, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/health"
    assert annotations["alb.ingress.kubernetes.io/listen-ports"] == '[{"HTTP": 80}]'
    assert "alb.ingress.kubernetes.io/inbound-cidrs" not in annotations
    delay = int(annotations["alb.ingress.kubernetes.io/target-group-attributes"].split("=")[1])
    assert delay == DEREGISTRATION_DELAY_SECONDS
    server = container(deployment, "server")
    assert server["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(delay)]
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace >= ENDPOINT.request_timeout_seconds + delay
    assert told(server, ServerEnv).drain_grace_s + delay < grace


def test_internet_facing_ingress_is_https_with_an_allow_list():
    access = IngressAccess(
        scheme="internet-facing", allowed_cidrs=("203.0.113.0/24", "198.51.100.0/24"),
        certificate_arn="arn:aws:acm:us-east-1:000000000000:certificate/00000000-0000-0000-0000-000000000000")
    annotations = ingress_annotations(access, 90)
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/inbound-cidrs"] == "203.0.113.0/24,198.51.100.0/24"
    assert annotations["alb.ingress.kubernetes.io/listen-ports"] == '[{"HTTPS": 443}]'
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == access.certificate_arn
    assert annotations["alb.ingress.kubernetes.io/ssl-policy"].startswith("ELBSecurityPolicy-TLS13")
    assert annotations["alb.ingress.kubernetes.io/load-balancer-attributes"] == "idle_timeout.timeout_seconds=90"


def test_the_gateway_exists_only_at_scale_to_zero_and_fronts_the_endpoint():
    """With a minimum of one replica the ALB sends straight to the pods; at zero, to the gateway."""
    always_on = _objects(spec())
    assert not [o for o in always_on if o["metadata"]["name"] == "sd21-gateway"]
    assert one(always_on, "Ingress")["spec"]["defaultBackend"]["service"]["name"] == "sd21-inference"
    at_zero = _objects(spec(scale_to_zero=HOLD))
    assert {o["kind"] for o in at_zero if o["metadata"]["name"] == "sd21-gateway"} == {
        "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"}
    assert one(at_zero, "Ingress")["spec"]["defaultBackend"]["service"] == {
        "name": "sd21-gateway", "port": {"number": one(at_zero, "Service", "sd21-gateway")["spec"]["ports"][0]["port"]}}
    # The ALB waits out a held request too.
    assert one(at_zero, "Ingress")["metadata"]["annotations"]["alb.ingress.kubernetes.io/load-balancer-attributes"] \
        == f"idle_timeout.timeout_seconds={HOLD.hold_seconds + ENDPOINT.request_timeout_seconds + 30}"
