from aws_cdk import Fn, Stack
from constructs import Construct

from stacks.network.vpc import ClusterNetwork
from stacks.settings import Settings


class NetworkStack(Stack):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, **kwargs) -> None:
        self._az_count = settings.network.az_count
        super().__init__(scope, id, **kwargs)
        self.network = ClusterNetwork(self, "Network", vpc_cidr=settings.network.vpc_cidr, az_count=settings.network.az_count,
                                      nat_gateways=settings.network.nat_gateways, discovery_tag=settings.cluster.discovery_tag)
        self.vpc = self.network.vpc

    @property
    def availability_zones(self) -> list[str]:
        # An environment-agnostic stack would otherwise get only two AZs;
        # pick the first `azCount` of the deploy region at deploy time instead.
        return [Fn.select(i, Fn.get_azs()) for i in range(self._az_count)]
