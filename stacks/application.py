"""The application stacks, wired together. Used by app.py (sandbox `cdk deploy`)
and by the release pipeline's deploy stage, so both deploy the same thing. It knows
nothing of the release: the pipeline deploys an Application, not the other way round."""
from dataclasses import dataclass

from constructs import Construct

from stacks.cluster.stack import ClusterStack
from stacks.network.stack import NetworkStack
from stacks.settings import Settings
from stacks.storage.stack import StorageStack
from stacks.workload.stack import WorkloadStack


@dataclass
class Application:
    settings: Settings
    storage: StorageStack
    network: NetworkStack
    cluster: ClusterStack
    workload: WorkloadStack

    @property
    def stacks(self) -> list:
        return [self.storage, self.network, self.cluster, self.workload]


def build_application(scope: Construct, settings: Settings, prefix: str = "Sd21") -> Application:
    storage = StorageStack(scope, f"{prefix}-Storage", settings=settings,
                           description="sd21: model bucket and image repository (retained)")
    network = NetworkStack(scope, f"{prefix}-Network", settings=settings,
                           description="sd21: VPC, flow logs, S3 endpoint")
    cluster = ClusterStack(scope, f"{prefix}-Cluster", settings=settings, vpc=network.vpc,
                           description="sd21: EKS, Karpenter, load balancer controller, Neuron")
    workload = WorkloadStack(scope, f"{prefix}-Workload", settings=settings, cluster=cluster.cluster,
                             repository=storage.repository, bucket=storage.bucket, access=storage.access,
                             description="sd21: compile Job, inference service, autoscaling, pod IAM")
    # The inf2 NodePool, my-scheduler and the load balancer controller come first.
    workload.add_stack_dependency(cluster)
    return Application(settings=settings, storage=storage, network=network, cluster=cluster, workload=workload)
