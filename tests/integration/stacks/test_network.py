"""VPC as the network stack builds it from the settings: azCount AZs picked at deploy
time, natGateways NAT gateways. The VPC's own tags, flow logs and S3 endpoint are asserted
on the unit alone (tests/unit/stacks/network/test_vpc.py)."""


def _subnets(template, kind):
    return [r for r in template.find_resources("AWS::EC2::Subnet").values()
            if {"Key": "aws-cdk:subnet-type", "Value": kind} in r["Properties"]["Tags"]]


def test_subnets_span_the_configured_azs(synthesized, application):
    template = synthesized.template(application.network)
    count = application.settings.network.az_count
    assert count >= 2
    assert len(_subnets(template, "Private")) == count and len(_subnets(template, "Public")) == count
    zones = [s["Properties"]["AvailabilityZone"] for s in _subnets(template, "Private")]
    assert zones == [{"Fn::Select": [i, {"Fn::GetAZs": ""}]} for i in range(count)]
    assert len(template.find_resources("AWS::EC2::NatGateway")) == application.settings.network.nat_gateways
