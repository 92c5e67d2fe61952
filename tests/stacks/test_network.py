"""VPC: AZs, subnet tags for load balancers and Karpenter, flow logs, S3 endpoint."""
from aws_cdk.assertions import Match


def _subnets(template, kind):
    return [r for r in template.find_resources("AWS::EC2::Subnet").values()
            if {"Key": "aws-cdk:subnet-type", "Value": kind} in r["Properties"]["Tags"]]


def test_subnets_span_the_configured_azs(synthesized, application):
    template = synthesized.template(application.network)
    count = application.settings.az_count
    assert count >= 2
    assert len(_subnets(template, "Private")) == count and len(_subnets(template, "Public")) == count
    zones = [s["Properties"]["AvailabilityZone"] for s in _subnets(template, "Private")]
    assert zones == [{"Fn::Select": [i, {"Fn::GetAZs": ""}]} for i in range(count)]
    assert len(template.find_resources("AWS::EC2::NatGateway")) == application.settings.nat_gateways


def test_subnet_tags_for_elb_and_karpenter_discovery(synthesized, application):
    template = synthesized.template(application.network)
    key, value = application.settings.discovery_tag
    for subnet in _subnets(template, "Private"):
        tags = subnet["Properties"]["Tags"]
        assert {"Key": "kubernetes.io/role/internal-elb", "Value": "1"} in tags
        assert {"Key": key, "Value": value} in tags
    for subnet in _subnets(template, "Public"):
        tags = subnet["Properties"]["Tags"]
        assert {"Key": "kubernetes.io/role/elb", "Value": "1"} in tags
        assert {"Key": key, "Value": value} not in tags


def test_flow_logs_and_s3_gateway_endpoint(synthesized, application):
    template = synthesized.template(application.network)
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL",
                                                            "LogDestinationType": "cloud-watch-logs"})
    template.has_resource_properties("AWS::EC2::VPCEndpoint", {
        "VpcEndpointType": "Gateway",
        "ServiceName": Match.object_like({"Fn::Join": Match.array_with([Match.array_with([".s3"])])}),
    })
