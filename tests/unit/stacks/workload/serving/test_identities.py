"""The workload's namespace and ServiceAccounts alone."""
from tests.unit.stacks.workload.charts import app_with_identities, one


def test_two_accounts_without_tokens_in_a_namespace_with_alb_readiness_gates():
    _, identities = app_with_identities()
    objects = identities.to_json()
    namespace = one(objects, "Namespace")
    assert namespace["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert set(accounts) == {"sd21-compile", "sd21-serve"}
    for account in accounts.values():
        assert account["metadata"]["namespace"] == namespace["metadata"]["name"]
        assert account["automountServiceAccountToken"] is False
    assert {o["kind"] for o in objects} == {"Namespace", "ServiceAccount"}, "no RBAC: the pods need no API access"
