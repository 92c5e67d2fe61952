"""A bare stack with an imported EKS cluster (and its kubectl provider) for the units that
attach to one: no cluster, layer or provider assets to build, so each test synthesizes in
well under a second."""
from dataclasses import dataclass

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2, aws_eks_v2 as eks
from aws_cdk.assertions import Template

CLUSTER_NAME = "example-cluster"


@dataclass
class Attached:
    stack: cdk.Stack
    cluster: eks.ICluster
    system_nodes: eks.Nodegroup
    dns: eks.Addon

    def logical_id(self, construct) -> str:
        """Of the CloudFormation resource behind an L1, L2 or L3 construct."""
        while not isinstance(construct, cdk.CfnElement):
            construct = construct.node.default_child
        return self.stack.get_logical_id(construct)

    def resources(self) -> dict:
        return Template.from_stack(self.stack).to_json()["Resources"]

    def resource(self, construct) -> dict:
        return self.resources()[self.logical_id(construct)]


@pytest.fixture
def attached() -> Attached:
    stack = cdk.Stack(cdk.App(), "Test")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
    provider = eks.KubectlProvider.from_kubectl_provider_attributes(
        stack, "Kubectl", service_token="arn:aws:lambda:us-east-1:111111111111:function:kubectl")
    cluster = eks.Cluster.from_cluster_attributes(stack, "Cluster", cluster_name=CLUSTER_NAME, vpc=vpc,
                                                  kubectl_provider=provider)
    system_nodes = eks.Nodegroup(stack, "SystemNodes", cluster=cluster, min_size=1)
    dns = eks.Addon(stack, "CoreDns", cluster=cluster, addon_name="coredns")
    return Attached(stack=stack, cluster=cluster, system_nodes=system_nodes, dns=dns)
