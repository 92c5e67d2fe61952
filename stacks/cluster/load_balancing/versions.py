"""Controller versions this app can install: each needs its IAM policy (policies/) and
its eks-charts chart version (aws-cdk-lib's AlbControllerVersion table: app v3.2.2 is
chart 3.2.2; aws/aws-cdk PR #37752)."""
from pathlib import Path

CHART_VERSIONS = {"v3.2.2": "3.2.2"}
POLICIES = Path(__file__).with_name("policies")


def policy_file(version: str) -> Path:
    return POLICIES / f"iam_policy_{version}.json"
