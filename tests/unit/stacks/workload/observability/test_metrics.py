"""The metrics the alarms read, without a stack."""
from sd21.api import ERROR_TYPES

from stacks.workload.observability.metrics import SERVER_FAILURES


def test_the_failure_ratio_counts_only_failures_the_server_can_answer():
    assert set(SERVER_FAILURES) <= set(ERROR_TYPES)
    assert "overloaded" not in SERVER_FAILURES and "invalid_request" not in SERVER_FAILURES
