from aws_cdk import Stack, aws_ec2 as ec2
from constructs import Construct

from stacks.cluster.eks import EksCluster
from stacks.karpenter.controller import Karpenter
from stacks.load_balancing.controller import alb_controller
from stacks.settings import Settings


class ClusterStack(Stack):
    """EKS with its system nodes, Karpenter and the load balancer controller."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, vpc: ec2.IVpc, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.eks = EksCluster(self, "Eks", settings=settings, vpc=vpc)
        self.cluster = self.eks.cluster
        self.karpenter = Karpenter(self, "Karpenter", settings=settings, cluster=self.cluster,
                                   system_nodes=self.eks.system_nodes)
        self.alb_controller = alb_controller(self, settings=settings, cluster=self.cluster,
                                             system_nodes=self.eks.system_nodes)
