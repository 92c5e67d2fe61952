"""The application stacks, wired together. Used by app.py (sandbox `cdk deploy`)
and by the release pipeline's deploy stage, so both deploy the same thing."""
from dataclasses import dataclass

from constructs import Construct

from stacks.cluster_stack import ClusterStack
from stacks.network_stack import NetworkStack
from stacks.settings import Settings
from stacks.storage_stack import StorageStack


@dataclass
class Application:
    settings: Settings
    storage: StorageStack
    network: NetworkStack
    cluster: ClusterStack

    @property
    def stacks(self) -> list:
        return [self.storage, self.network, self.cluster]


def build_application(scope: Construct, settings: Settings, prefix: str = "Sd21") -> Application:
    storage = StorageStack(scope, f"{prefix}-Storage", settings=settings,
                           description="sd21: model bucket and image repository (retained)")
    network = NetworkStack(scope, f"{prefix}-Network", settings=settings,
                           description="sd21: VPC, flow logs, S3 endpoint")
    cluster = ClusterStack(scope, f"{prefix}-Cluster", settings=settings, vpc=network.vpc,
                           description="sd21: EKS, Karpenter, load balancer controller, Neuron")
    return Application(settings=settings, storage=storage, network=network, cluster=cluster)
