"""The workload stack's own way into the cluster: a kubectl provider of its own, with
an EKS access entry, over the cluster imported by name.

The workload's manifests and Helm releases used to call the Cluster stack's kubectl
Lambda through an exported ARN; a CDK upgrade that replaces that Lambda then blocks
on an export in use. With a provider of its own, the Workload stack imports only
stable values (the cluster's name, security group and subnets).
"""
from aws_cdk import aws_ec2 as ec2, aws_eks_v2 as eks
from constructs import Construct

from stacks.cluster.eks.kubectl_layers import acknowledge_kubectl_provider, kubectl_layer


class WorkloadKubectl(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, kubernetes_version: str) -> None:
        super().__init__(scope, id)
        private = cluster.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnets
        by_name = eks.Cluster.from_cluster_attributes(
            self, "ClusterByName", cluster_name=cluster.cluster_name, vpc=cluster.vpc,
            cluster_security_group_id=cluster.cluster_security_group_id)
        self.provider = eks.KubectlProvider(
            self, "Provider", cluster=by_name, kubectl_layer=kubectl_layer(self, kubernetes_version),
            # A private endpoint is only reachable from inside the VPC.
            private_subnets=private, security_groups=[by_name.cluster_security_group])
        acknowledge_kubectl_provider(self.provider)
        self.access = eks.AccessEntry(
            self, "Access", cluster=by_name, principal=self.provider.role.role_arn,
            access_policies=[eks.AccessPolicy.from_access_policy_name(
                "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER)])
        self.cluster = eks.Cluster.from_cluster_attributes(
            self, "Cluster", cluster_name=cluster.cluster_name, vpc=cluster.vpc,
            cluster_security_group_id=cluster.cluster_security_group_id, kubectl_provider=self.provider)

    def after_access(self, construct: Construct) -> None:
        """Everything that calls the provider waits for its access entry."""
        construct.node.add_dependency(self.access)
