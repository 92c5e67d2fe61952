"""How every Kubernetes manifest and Helm release of the app is attached to the cluster."""
import cdk8s
from aws_cdk import Duration, aws_eks_v2 as eks
from constructs import Construct

# Helm gives up on a release after this, well inside the kubectl Lambda's 15 minutes:
# a failed install reaches CloudFormation in minutes, not after the custom resource's hour.
HELM_TIMEOUT = Duration.minutes(5)


def attach_chart(scope: Construct, id: str, cluster: eks.ICluster, chart: cdk8s.Chart) -> eks.KubernetesManifest:
    """The chart's objects as one KubernetesManifest, applied with `kubectl apply`
    (overwrite): a redeploy after a failed rollback finds objects that already exist
    and updates them instead of failing on AlreadyExists."""
    return eks.KubernetesManifest(scope, id, cluster=cluster, manifest=chart.to_json(), overwrite=True)
