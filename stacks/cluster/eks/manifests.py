"""How every Kubernetes manifest and Helm release of the app is attached to the cluster."""
import cdk8s
from aws_cdk import Duration, RemovalPolicy, aws_eks_v2 as eks
from constructs import Construct

# Helm gives up on a release after this, well inside the kubectl Lambda's 15 minutes:
# a failed install reaches CloudFormation in minutes, not after the custom resource's hour.
HELM_TIMEOUT = Duration.minutes(5)


def attach_chart(scope: Construct, id: str, cluster: eks.ICluster, chart: cdk8s.Chart) -> eks.KubernetesManifest:
    """The chart's objects as one KubernetesManifest, applied with `kubectl apply`
    (overwrite): a redeploy after a failed rollback finds objects that already exist
    and updates them instead of failing on AlreadyExists."""
    return eks.KubernetesManifest(scope, id, cluster=cluster, manifest=chart.to_json(), overwrite=True)


def keep_when_removed(resource: eks.HelmChart | eks.KubernetesManifest) -> None:
    """For a release or manifest whose deletion destroys what it does not own.

    When a custom resource's logical id changes (a construct renamed or moved),
    CloudFormation creates the new one and then deletes the old: `helm uninstall
    karpenter-crd` deletes every NodePool, EC2NodeClass and NodeClaim (every inf2 node
    goes), and deleting the namespace deletes the whole workload, while the change set
    shows one harmless-looking Remove. Retained, the old resource leaves the stack
    without a Delete call and the new one takes the objects over (`helm upgrade
    --install`, `kubectl apply`). The karpenter-crd chart offers no value for
    `helm.sh/resource-policy: keep` (its values.yaml has only `webhook`), so the
    retention is CloudFormation's. A deliberate removal then needs `kubectl delete`
    or `helm uninstall` by hand (the approval rule in docs/releasing.md).
    """
    resource.node.find_child("Resource").apply_removal_policy(RemovalPolicy.RETAIN)
