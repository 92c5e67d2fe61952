"""The cold-start metrics pod's chart alone: one replica on the system nodes, no token,
told where Prometheus is, which node pool to watch and which cluster to publish under."""
import cdk8s
from sd21.contract import ColdStartMetricsEnv

from stacks.workload.cold_start.metrics_chart import NAME, ColdStartMetricsChart

SYSTEM_NODES = ("example.com/role", "system")


def _objects() -> list[dict]:
    return ColdStartMetricsChart(
        cdk8s.Testing.app(), "cold-start", image="registry.example/sd21:commit-a-gateway", namespace="sd21",
        cluster_name="sd21-inf2", system_node_label=SYSTEM_NODES, prometheus_url="http://prometheus.example",
        node_pool="inf2").to_json()


def test_one_replica_on_the_system_nodes_without_a_token():
    objects = _objects()
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert deployment["metadata"]["name"] == account["metadata"]["name"] == NAME
    assert deployment["spec"]["replicas"] == 1, "two would publish every point twice"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == NAME
    key, value = SYSTEM_NODES
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]
    (metrics,) = pod["containers"]
    assert metrics["command"] == ["sd21-cold-start-metrics"]
    assert metrics["image"] == "registry.example/sd21:commit-a-gateway"
    assert metrics["securityContext"]["readOnlyRootFilesystem"] is True
    assert metrics["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_it_is_told_prometheus_the_node_pool_and_the_cluster_it_publishes_under():
    (deployment,) = [o for o in _objects() if o["kind"] == "Deployment"]
    told = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    # As sd21-cold-start-metrics parses it.
    assert ColdStartMetricsEnv.from_env(told) == ColdStartMetricsEnv(
        prometheus_url="http://prometheus.example", node_pool="inf2", cluster="sd21-inf2")
    assert "AWS_REGION" in told  # boto3's region: where the figures go
