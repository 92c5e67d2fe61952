"""Joins that ask the other side: each expectation comes from the consumer (the server's
own env as sd21.contract parses it, the chart's own naming rule), never from the constant the
producer used."""
from __future__ import annotations

import json

import pytest
from sd21.contract import ColdStartMetricsEnv, GatewayEnv, ServerEnv

from tools import rendering
from tests.support.k8s_objects import container, env, pod_spec


def prometheus_server_url(template: dict) -> str:
    """The Service the installed prometheus chart creates, by the chart's own naming rule
    (prometheus-community/helm-charts charts/prometheus/templates/_helpers.tpl,
    "prometheus.server.fullname"; values server.name "server", server.service.servicePort 80)."""
    (release,) = [r["Properties"] for r in template["Resources"].values()
                  if r["Type"] == "Custom::AWSCDK-EKS-HelmChart" and r["Properties"]["Chart"] == "prometheus"]
    values = json.loads(rendering.placeholder(release.get("Values", "{}")))
    server = values.get("server", {})
    name = values.get("nameOverride") or release["Chart"]
    if server.get("fullnameOverride"):
        fullname = server["fullnameOverride"]
    elif name in release["Release"]:
        fullname = f"{release['Release']}-{server.get('name', 'server')}"
    else:
        fullname = f"{release['Release']}-{name}-{server.get('name', 'server')}"
    port = server.get("service", {}).get("servicePort", 80)
    return f"http://{fullname[:63].rstrip('-')}.{release['Namespace']}.svc:{port}"


def server_env(deployment: dict) -> ServerEnv:
    return ServerEnv.from_env(env(container(deployment, "server")))


def gateway_env(deployment: dict) -> GatewayEnv:
    return GatewayEnv.from_env(env(container(deployment, "gateway")))


def same_service(url: str, port: int | None, expected: str) -> bool:
    """url (+ a separate port) names the same Service and port as expected (http default 80)."""
    host = url.removeprefix("http://").rstrip("/")
    if ":" not in host:
        host = f"{host}:{port or 80}"
    return f"http://{host}" == expected


def test_keda_queries_the_prometheus_the_chart_installs(each_mode):
    template = each_mode.template(each_mode.application.workload)
    (scaled,) = [o for o in each_mode.objects if o["kind"] == "ScaledObject"]
    addresses = {t["metadata"]["serverAddress"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"}
    assert addresses and all(same_service(a, None, prometheus_server_url(template)) for a in addresses)


def test_the_chart_naming_rule_reads_the_release(workload_template):
    renamed = json.loads(json.dumps(workload_template).replace('"Release": "prometheus"', '"Release": "metrics"'))
    assert prometheus_server_url(renamed).startswith("http://metrics-prometheus-server.")


def alb_attribute(ingress: dict, annotation: str, key: str) -> int:
    """One key=value of the Ingress's `alb.ingress.kubernetes.io/<annotation>` list."""
    attributes = ingress["metadata"]["annotations"][f"alb.ingress.kubernetes.io/{annotation}"]
    return int(dict(a.split("=") for a in attributes.split(","))[key])


def alb_idle_seconds(ingress: dict) -> int:
    return alb_attribute(ingress, "load-balancer-attributes", "idle_timeout.timeout_seconds")


def deregistration_seconds(ingress: dict) -> int:
    return alb_attribute(ingress, "target-group-attributes", "deregistration_delay.timeout_seconds")


@pytest.fixture()
def serving(workload):
    deployment = workload("Deployment")
    server = container(deployment, "server")
    told = server_env(deployment)
    return {
        "request_timeout": told.request_timeout_s,  # admission to response, queue included
        "drain_grace": told.drain_grace_s,
        "alb_idle": alb_idle_seconds(workload("Ingress")),
        "deregistration": deregistration_seconds(workload("Ingress")),
        "pre_stop": server["lifecycle"]["preStop"]["exec"]["command"],
        "grace": pod_spec(deployment)["terminationGracePeriodSeconds"],
    }


def test_the_alb_waits_longer_than_the_slowest_accepted_request(serving):
    """The server answers within its request timeout of admission (queue wait and
    generation both count); an ALB idle timeout at or below it cuts answers off as 504s."""
    assert serving["alb_idle"] > serving["request_timeout"]


def test_shutdown_order_lines_up(serving):
    """preStop waits out the ALB's deregistration, then the server drains; the kubelet's
    grace period covers both, so the drain is never cut short by SIGKILL."""
    assert serving["pre_stop"] == ["sleep", str(serving["deregistration"])]
    assert serving["drain_grace"] >= serving["request_timeout"]
    assert serving["grace"] >= serving["deregistration"] + serving["drain_grace"]


def test_the_gateway_waits_as_long_as_the_server(zero):
    (gateway,) = [o for o in zero.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "sd21-gateway"]
    (server_deployment,) = [o for o in zero.objects if o["kind"] == "Deployment"
                            and o["metadata"]["name"] == "sd21-inference"]
    assert gateway_env(gateway).request_timeout_s >= server_env(server_deployment).request_timeout_s


def test_a_broken_device_leaves_the_service_before_the_server_exits(workload):
    """The server answers 503 (and the gateway resends) until the readiness probe has taken
    it out of the Service; exiting sooner would turn those answers into refused connections."""
    server = container(workload("Deployment"), "server")
    told = server_env(workload("Deployment"))
    probe = server["readinessProbe"]
    assert probe["httpGet"]["path"] == "/ready"
    exit_delay = told.unhealthy_exit_delay_s
    assert exit_delay > probe["periodSeconds"] * probe["failureThreshold"]
    # A hang must be found before the client's request times out (queue wait included).
    assert told.watchdog_min_s < told.request_timeout_s
    # Liveness would restart it too, but later: the exit is what restarts it quickly.
    liveness = server["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > exit_delay


def test_at_scale_to_zero_the_alb_waits_out_a_held_request(zero):
    """The gateway may hold a request (its hold_s) while a replica starts, then the server may
    take its whole timeout: the ALB's idle timeout covers both, read from the two pods' env."""
    (gateway,) = [o for o in zero.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "sd21-gateway"]
    (server,) = [o for o in zero.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "sd21-inference"]
    (ingress,) = [o for o in zero.objects if o["kind"] == "Ingress"]
    attributes = dict(a.split("=") for a in ingress["metadata"]["annotations"]
                      ["alb.ingress.kubernetes.io/load-balancer-attributes"].split(","))
    hold = gateway_env(gateway).hold_s
    assert hold > 0 and gateway_env(gateway).hold_requests > 0
    timeout = server_env(server).request_timeout_s
    assert int(attributes["idle_timeout.timeout_seconds"]) > hold + timeout
    # The ALB's maximum: seen only in third-party docs (convox LoadBalancerIdleTimeout: "1-4000");
    # AWS's own ALB page was not found from here.
    assert int(attributes["idle_timeout.timeout_seconds"]) <= 4000


def karpenter_metrics_target(cluster_template: dict) -> str:
    """host:port of the Service the installed karpenter chart creates for its metrics, by the
    chart's own rules: "karpenter.fullname" (templates/_helpers.tpl: the release name when it
    contains "karpenter", else <release>-karpenter) and port controller.metrics.port (8080)."""
    (release,) = [r["Properties"] for r in cluster_template["Resources"].values()
                  if r["Type"] == "Custom::AWSCDK-EKS-HelmChart" and r["Properties"]["Chart"] == "karpenter"]
    values = json.loads(rendering.placeholder(release.get("Values", "{}")))
    name = values.get("fullnameOverride") or (
        release["Release"] if "karpenter" in release["Release"] else f"{release['Release']}-karpenter")
    port = values.get("controller", {}).get("metrics", {}).get("port", 8080)
    return f"{name[:63].rstrip('-')}.{release['Namespace']}.svc:{port}"


def test_prometheus_scrapes_the_karpenter_service_the_chart_installs(workload_template, synthesized, application):
    import yaml

    (prometheus,) = [r["Properties"] for r in workload_template["Resources"].values()
                     if r["Type"] == "Custom::AWSCDK-EKS-HelmChart" and r["Properties"]["Chart"] == "prometheus"]
    jobs = yaml.safe_load(json.loads(rendering.placeholder(prometheus["Values"]))["extraScrapeConfigs"])
    (karpenter,) = [job for job in jobs if job["job_name"] == "karpenter"]
    (targets,) = karpenter["static_configs"]
    cluster_template = json.loads(synthesized.template_file(application.cluster).read_text())
    assert targets["targets"] == [karpenter_metrics_target(cluster_template)]
    assert karpenter.get("metrics_path", "/metrics") == "/metrics"


def test_the_cold_start_metrics_pod_filters_on_the_node_pool_the_cluster_deploys(workload, cluster_objects,
                                                                                  workload_template, application):
    """sd21-cold-start-metrics, as it parses its pod's env: the node pool the cluster deploys,
    the Prometheus the chart installs, the cluster the dashboard selects."""
    (pool,) = [o for o in cluster_objects if o["kind"] == "NodePool"]
    pod = pod_spec(workload("Deployment", "sd21-cold-start-metrics"))
    told = ColdStartMetricsEnv.from_env(env(pod["containers"][0]))
    assert told.node_pool == pool["metadata"]["name"]
    assert same_service(told.prometheus_url, None, prometheus_server_url(workload_template))
    assert told.cluster == application.settings.cluster.cluster_name


def test_whoever_the_alb_talks_to_keeps_idle_connections_longer_than_the_alb(workload, zero):
    """An ALB that reuses a connection its target is closing gets a 502; the target's keep-alive
    must exceed the load balancer's idle timeout. AWS says so for the Classic Load Balancer
    (docs.aws.amazon.com/elasticloadbalancing/latest/classic/config-idle-timeout.html: "make sure
    that the value you set for the HTTP keep-alive time is greater than the idle timeout") and,
    seen only in its translated copies, for the ALB (application/edit-load-balancer-attributes).
    Read from each pod's own env, through the keep-alive the process itself computes from it."""
    from sd21 import gateway, server

    assert server.keep_alive_seconds(server_env(workload("Deployment")).request_timeout_s) > \
        alb_idle_seconds(workload("Ingress"))
    told = gateway_env(zero.one("Deployment", "sd21-gateway"))
    assert gateway.keep_alive_seconds(told.hold_s, told.request_timeout_s) > \
        alb_idle_seconds(zero.one("Ingress", "sd21-inference"))
