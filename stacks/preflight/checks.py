"""The preflight checks: each returns Findings, one line each, saying what to do on failure."""
from __future__ import annotations

import json
from dataclasses import dataclass

from stacks.external_artifacts import Inventory
from stacks.preflight.registries import Registries, Unknown
from stacks.settings import Settings, workload_nodes

# EC2 vCPU quotas of the Inf families ("Running On-Demand Inf instances", "All Inf Spot
# Instance Requests"; the codes are used the same way across public quota tooling).
INF_QUOTAS = {"on-demand": "L-1945791B", "spot": "L-B5D1601B"}


@dataclass(frozen=True)
class Finding:
    ok: bool
    check: str
    message: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check}: {self.message}"


def vpc_zones(ec2, settings: Settings) -> list[str]:
    """The zones the Network stack uses: the first azCount of Fn::GetAZs (which lists the
    region's available zones as DescribeAvailabilityZones does)."""
    zones = ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])
    return sorted(z["ZoneName"] for z in zones["AvailabilityZones"] if z.get("ZoneType", "availability-zone")
                  == "availability-zone")[:settings.az_count]


def inf2_offered(ec2, settings: Settings) -> list[Finding]:
    zones = vpc_zones(ec2, settings)
    compile_node, serve_node = workload_nodes()
    wanted = sorted({compile_node.name, serve_node.name})
    offers = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": wanted},
                                                   {"Name": "location", "Values": zones}])
    offered = {(o["InstanceType"], o["Location"]) for o in offers["InstanceTypeOfferings"]}
    findings = []
    for instance_type in wanted:
        where = sorted(zone for zone in zones if (instance_type, zone) in offered)
        if where:
            findings.append(Finding(True, f"{instance_type} offered", f"in {', '.join(where)} of {', '.join(zones)}"))
        else:
            findings.append(Finding(False, f"{instance_type} offered",
                                    f"in none of the VPC's zones ({', '.join(zones)}): deploy to a region or "
                                    "azCount whose zones offer it"))
    return findings


def inf_quota(quotas, settings: Settings) -> list[Finding]:
    compile_node, serve_node = workload_nodes()
    need = compile_node.vcpu + settings.max_replicas * serve_node.vcpu
    findings = []
    for capacity in settings.node_capacity_types:
        code = INF_QUOTAS[capacity]
        value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
        ok = value >= need
        findings.append(Finding(ok, f"Inf {capacity} vCPU quota ({code})",
                                f"{value:g} vCPU" + ("" if ok else
                                f", but the compile node ({compile_node.name}) and maxReplicas={settings.max_replicas} "
                                f"{serve_node.name} nodes need {need}: request an increase in Service Quotas")))
    return findings


def connection_available(client, settings: Settings) -> Finding:
    arn = settings.pipeline_connection_arn
    status = client.get_connection(ConnectionArn=arn)["Connection"]["ConnectionStatus"]
    ok = status == "AVAILABLE"
    return Finding(ok, "source connection", f"{arn} is {status}" + ("" if ok else
                   ": finish the handshake in the console (Developer Tools, Settings, Connections)"))


def artifacts_exist(inventory: Inventory, registries: Registries) -> list[Finding]:
    findings = []
    items = [("image", ref, lambda ref=ref: registries.image_exists(ref)) for ref in inventory.registry_images]
    items += [("chart", f"{repo} {chart} {version}",
               lambda r=repo, c=chart, v=version: registries.chart_exists(r, c, v))
              for repo, chart, version in inventory.charts_sorted]
    for kind, name, exists in items:
        try:
            found = exists()
        except Unknown as error:
            findings.append(Finding(False, f"{kind} {name}", f"could not be checked: {error}"))
            continue
        findings.append(Finding(found, f"{kind} {name}", "exists" if found else
                                "not found in its registry: pin one that exists and update "
                                "stacks/external_artifacts.yaml with the evidence"))
    return findings


def weights_exist(settings: Settings, s3, registries: Registries) -> Finding:
    check = f"weights {settings.model_id}@{settings.model_revision}"
    if settings.weights_source == "hub":
        try:
            found = registries.hub_revision_exists(settings.model_id, settings.model_revision)
        except Unknown as error:
            return Finding(False, check, f"could not be checked: {error}")
        return Finding(found, check, "on the hub" if found else
                       "not on the hub (withdrawn?): mirror a copy with sd21-mirror-weights and set weightsSource")
    from sd21.s3 import parse_url
    from sd21.weights import MANIFEST

    bucket, prefix = parse_url(settings.weights_source.rstrip("/") + "/")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + MANIFEST, MaxKeys=1).get("Contents", [])
    if not listing:
        return Finding(False, check, f"no {MANIFEST} under {settings.weights_source}: run "
                                     f"sd21-mirror-weights --dest {settings.weights_source}")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read())
    same = (manifest.get("model_id"), manifest.get("revision")) == (settings.model_id, settings.model_revision)
    return Finding(same, check, f"mirrored in {settings.weights_source}" if same else
                   f"{settings.weights_source} mirrors {manifest.get('model_id')}@{manifest.get('revision')}: "
                   "mirror this revision to another prefix")
