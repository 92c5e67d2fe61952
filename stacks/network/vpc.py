"""The VPC the cluster runs in: private subnets for nodes, public ones for ALBs."""
from aws_cdk import RemovalPolicy, Tags, aws_ec2 as ec2, aws_logs as logs
from constructs import Construct


class ClusterNetwork(Construct):
    """VPC over `azCount` AZs with flow logs, an S3 gateway endpoint and the
    subnet tags that the AWS Load Balancer Controller and Karpenter look for."""

    def __init__(self, scope: Construct, id: str, *, vpc_cidr: str, az_count: int, nat_gateways: int,
                 discovery_tag: tuple[str, str]) -> None:
        super().__init__(scope, id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
            max_azs=az_count,
            nat_gateways=nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                # /19 leaves room for one IP per pod (VPC CNI) on many nodes.
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=19
                ),
            ],
            gateway_endpoints={
                # Model artifacts come from S3: keep that traffic off the NAT gateways.
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
            },
        )
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        discovery_key, discovery_value = discovery_tag
        for subnet in self.vpc.private_subnets:
            Tags.of(subnet).add("kubernetes.io/role/internal-elb", "1")
            Tags.of(subnet).add(discovery_key, discovery_value)
        for subnet in self.vpc.public_subnets:
            Tags.of(subnet).add("kubernetes.io/role/elb", "1")
