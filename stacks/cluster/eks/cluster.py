"""The EKS cluster: native AWS::EKS::Cluster, a small on-demand system node
group, managed add-ons, control-plane logs, secrets encryption and access entries."""
from typing import Mapping, Sequence

from aws_cdk import CfnOutput, Fn, Stack, Tags, aws_ec2 as ec2, aws_eks_v2 as eks, aws_kms as kms
from constructs import Construct

from stacks.cluster.eks.kubectl_layers import acknowledge_kubectl_provider, kubectl_layer
from stacks.compliance import acknowledge, managed_policy

SYSTEM_NODE_LABEL = ("sd21.aws/node-role", "system")


class EksCluster(Construct):
    def __init__(self, scope: Construct, id: str, *, vpc: ec2.IVpc, cluster_name: str, kubernetes_version: str,
                 endpoint_access: str, public_access_cidrs: Sequence[str], admin_principal_arn: str | None,
                 addon_versions: Mapping[str, str], discovery_tag: tuple[str, str],
                 system_node_instance_type: str, system_node_min_size: int, system_node_desired_size: int,
                 system_node_max_size: int, system_node_disk_gib: int) -> None:
        super().__init__(scope, id)
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        secrets_key = kms.Key(
            self,
            "SecretsKey",
            description=f"Envelope encryption of Kubernetes secrets of {cluster_name}",
            enable_key_rotation=True,
        )
        if endpoint_access == "private":
            endpoint = eks.EndpointAccess.PRIVATE
        else:
            endpoint = eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*public_access_cidrs)

        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=cluster_name,
            version=eks.KubernetesVersion.of(kubernetes_version),
            vpc=vpc,
            vpc_subnets=[private],
            endpoint_access=endpoint,
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            # The add-ons below are EKS-managed (versioned, upgradable), not the
            # unmanaged copies EKS would otherwise bootstrap.
            bootstrap_self_managed_addons=False,
            # Admin access is explicit (adminPrincipalArn), not whoever ran the deploy.
            bootstrap_cluster_creator_admin_permissions=False,
            secrets_encryption_key=secrets_key,
            cluster_logging=[
                eks.ClusterLoggingTypes.API,
                eks.ClusterLoggingTypes.AUDIT,
                eks.ClusterLoggingTypes.AUTHENTICATOR,
                eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
                eks.ClusterLoggingTypes.SCHEDULER,
            ],
            kubectl_provider_options=eks.KubectlProviderOptions(
                kubectl_layer=kubectl_layer(self, kubernetes_version),
                # A private endpoint is only reachable from inside the VPC.
                private_subnets=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnets,
            ),
        )
        self._acknowledge_cdk_managed_parts()
        self.node_security_group = self._karpenter_node_security_group(vpc, cluster_name, discovery_tag)
        self.operator_security_group = self._operator_access(vpc, cluster_name)

        networking = [self._addon(name, addon_versions) for name in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")]
        self.system_nodes = self.cluster.add_nodegroup_capacity(
            "SystemNodes",
            # No fixed name: CloudFormation replaces a node group to change its instance
            # type, which a fixed name would block.
            instance_types=[ec2.InstanceType(system_node_instance_type)],
            ami_type=eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
            capacity_type=eks.CapacityType.ON_DEMAND,
            min_size=system_node_min_size,
            desired_size=system_node_desired_size,
            max_size=system_node_max_size,
            disk_size=system_node_disk_gib,
            labels=dict([SYSTEM_NODE_LABEL]),
            subnets=private,
        )
        for name in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"):
            acknowledge(self.system_nodes.role, managed_policy(name),
                        "Managed node group role: EKS documents these AWS managed policies for nodes.")
        # Nodes only become Ready once the CNI runs; CoreDNS only once nodes exist.
        for addon in networking:
            self.system_nodes.node.add_dependency(addon)
        self.coredns = self._addon("coredns", addon_versions)
        self.coredns.node.add_dependency(self.system_nodes)

        if admin_principal_arn:
            self.cluster.grant_access(
                "AdminAccess",
                admin_principal_arn,
                [eks.AccessPolicy.from_access_policy_name(
                    "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
                )],
            )

    def _acknowledge_cdk_managed_parts(self) -> None:
        acknowledge(self.cluster.role, managed_policy("AmazonEKSClusterPolicy"),
                    "The EKS control-plane service role requires this AWS managed policy.")
        acknowledge_kubectl_provider(self.cluster.kubectl_provider)

    def _karpenter_node_security_group(self, vpc: ec2.IVpc, cluster_name: str,
                                       discovery_tag: tuple[str, str]) -> ec2.SecurityGroup:
        """Security group for Karpenter-launched nodes, found by the discovery tag.

        The EKS-created cluster security group cannot be tagged through
        CloudFormation, so inf2 nodes get their own group that trusts it both ways.
        """
        group = ec2.SecurityGroup(
            self, "KarpenterNodes", vpc=vpc, allow_all_outbound=True,
            description=f"Karpenter nodes of {cluster_name}",
            # The load balancer controller adds its own ingress rules to this group. Inline
            # rules are one property that CloudFormation rewrites whole on any change to
            # them, revoking the controller's (cfn-language-discussion#157); rules as
            # separate resources leave the others alone.
            disable_inline_rules=True,
        )
        cluster_group = ec2.Peer.security_group_id(self.cluster.cluster_security_group_id)
        group.add_ingress_rule(group, ec2.Port.all_traffic(), "node to node")
        group.add_ingress_rule(cluster_group, ec2.Port.all_traffic(), "control plane and system nodes")
        ec2.CfnSecurityGroupIngress(
            self, "ClusterFromKarpenterNodes",
            group_id=self.cluster.cluster_security_group_id,
            source_security_group_id=group.security_group_id,
            ip_protocol="-1",
            description="Karpenter nodes to control plane and system nodes",
        )
        discovery_key, discovery_value = discovery_tag
        Tags.of(group).add(discovery_key, discovery_value)
        # The load balancer controller opens target ports on the one group so tagged.
        Tags.of(group).add(f"kubernetes.io/cluster/{cluster_name}", "owned")
        return group

    def _operator_access(self, vpc: ec2.IVpc, cluster_name: str) -> ec2.SecurityGroup:
        """Operators reach the private API endpoint from inside the VPC: an AWS CloudShell
        VPC environment (or any shell) in a private subnet with this group (docs/operating.md,
        "kubectl without a public endpoint"). The group itself accepts nothing."""
        group = ec2.SecurityGroup(self, "OperatorAccess", vpc=vpc, allow_all_outbound=True,
                                  description=f"Operator shells that run kubectl against {cluster_name}")
        ec2.CfnSecurityGroupIngress(
            self, "ApiFromOperators",
            group_id=self.cluster.cluster_security_group_id,
            source_security_group_id=group.security_group_id,
            ip_protocol="tcp", from_port=443, to_port=443,
            description="Operator shells to the Kubernetes API (private endpoint)",
        )
        stack = Stack.of(self)
        private = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids
        CfnOutput(stack, "OperatorSecurityGroupId", value=group.security_group_id,
                  description="Security group for a CloudShell VPC environment that runs kubectl")
        CfnOutput(stack, "OperatorSubnetIds", value=Fn.join(",", private),
                  description="Private subnets for that CloudShell VPC environment")
        CfnOutput(stack, "KubeconfigCommand",
                  value=f"aws eks update-kubeconfig --name {cluster_name} --region {stack.region}",
                  description="Run in that environment, as adminPrincipalArn (or a principal with an access entry)")
        return group

    def _addon(self, name: str, versions: Mapping[str, str]) -> eks.Addon:
        return eks.Addon(
            self,
            f"Addon-{name}",
            cluster=self.cluster,
            addon_name=name,
            addon_version=versions.get(name),
        )
