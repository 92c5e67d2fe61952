"""The IAM role of Karpenter-launched nodes and its EKS access entry."""
from aws_cdk import aws_eks_v2 as eks, aws_iam as iam
from constructs import Construct

from stacks.compliance import acknowledge, managed_policy

NODE_MANAGED_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


class KarpenterNodeRole(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.Cluster) -> None:
        super().__init__(scope, id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Nodes launched by Karpenter (inf2 NodePool)",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(n) for n in NODE_MANAGED_POLICIES],
        )
        for name in NODE_MANAGED_POLICIES:
            acknowledge(self.role, managed_policy(name),
                        "Karpenter's documented node role: AWS keeps these worker, CNI, ECR pull-only "
                        "and SSM policies current with EKS; a copy would drift.")
        # EC2_LINUX lets kubelets with this role join the cluster as nodes.
        self.access_entry = eks.AccessEntry(
            self,
            "AccessEntry",
            cluster=cluster,
            principal=self.role.role_arn,
            access_entry_type=eks.AccessEntryType.EC2_LINUX,
            access_policies=[],
        )
