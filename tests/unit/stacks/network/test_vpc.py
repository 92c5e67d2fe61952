"""The VPC alone: its AZs and NAT gateways from its props, the subnet tags load balancers
and Karpenter find subnets by, flow logs and the S3 gateway endpoint."""
import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from stacks.network.vpc import ClusterNetwork

DISCOVERY = ("karpenter.sh/discovery", "example-cluster")


class _ThreeAzStack(cdk.Stack):
    # An environment-agnostic stack offers only two AZs; NetworkStack picks azCount of them.
    @property
    def availability_zones(self) -> list[str]:
        return ["az-a", "az-b", "az-c"]


def _template(**props) -> Template:
    stack = _ThreeAzStack(cdk.App(), "Test")
    props = {"vpc_cidr": "10.42.0.0/16", "az_count": 3, "nat_gateways": 1, "discovery_tag": DISCOVERY, **props}
    ClusterNetwork(stack, "Network", **props)
    return Template.from_stack(stack)


def _subnets(template: Template, kind: str) -> list[dict]:
    return [r for r in template.find_resources("AWS::EC2::Subnet").values()
            if {"Key": "aws-cdk:subnet-type", "Value": kind} in r["Properties"]["Tags"]]


@pytest.mark.parametrize("az_count, nat_gateways", [(3, 1), (2, 2)])
def test_subnets_per_az_and_nat_gateways_come_from_the_props(az_count, nat_gateways):
    template = _template(az_count=az_count, nat_gateways=nat_gateways)
    assert len(_subnets(template, "Private")) == az_count and len(_subnets(template, "Public")) == az_count
    assert len(template.find_resources("AWS::EC2::NatGateway")) == nat_gateways
    template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.42.0.0/16"})


def test_subnet_tags_for_elb_and_karpenter_discovery():
    template = _template()
    key, value = DISCOVERY
    for subnet in _subnets(template, "Private"):
        tags = subnet["Properties"]["Tags"]
        assert {"Key": "kubernetes.io/role/internal-elb", "Value": "1"} in tags
        assert {"Key": key, "Value": value} in tags
    for subnet in _subnets(template, "Public"):
        tags = subnet["Properties"]["Tags"]
        assert {"Key": "kubernetes.io/role/elb", "Value": "1"} in tags
        assert {"Key": key, "Value": value} not in tags


def test_flow_logs_and_s3_gateway_endpoint():
    template = _template()
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL",
                                                            "LogDestinationType": "cloud-watch-logs"})
    template.has_resource_properties("AWS::EC2::VPCEndpoint", {
        "VpcEndpointType": "Gateway",
        "ServiceName": Match.object_like({"Fn::Join": Match.array_with([Match.array_with([".s3"])])}),
    })
