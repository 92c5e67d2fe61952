"""The preflight checks: each returns Findings, one line each, saying what to do on failure."""
from __future__ import annotations

import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

from tools.preflight.assembly import Referenced
from tools.preflight.registries import Registries, Unknown
from stacks.settings import Settings, workload_nodes

# EC2 vCPU quotas of the Inf families ("Running On-Demand Inf instances", "All Inf Spot
# Instance Requests"; the codes are used the same way across public quota tooling).
INF_QUOTAS = {"on-demand": "L-1945791B", "spot": "L-B5D1601B"}
# SSM errors that say nothing about the parameter: InternalServerError (GetParameter's errors
# in botocore's ssm service model) and ThrottlingException (a throttling code in botocore's
# retries/standard.py, raised once botocore's own retries are spent).
SSM_UNKNOWN = ("InternalServerError", "ThrottlingException")


@dataclass(frozen=True)
class Finding:
    ok: bool
    check: str
    message: str
    warning: bool = False  # not ok, yet not a failure: a question that got no answer

    @property
    def failed(self) -> bool:
        return not self.ok and not self.warning

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'WARN' if self.warning else 'FAIL'} {self.check}: {self.message}"


def unknown(check: str, error: Exception, settings: Settings) -> Finding:
    """Neither yes nor no (unreachable, rate-limited, 5xx): a warning unless preflightUnknownIsFatal."""
    fatal = settings.release.preflight_unknown_is_fatal
    return Finding(False, check, f"could not be checked: {error}" + (" (preflightUnknownIsFatal)" if fatal else
                   "; check it by hand, or set preflightUnknownIsFatal to fail on this"), warning=not fatal)


def vpc_zones(ec2, settings: Settings) -> list[str]:
    """The zones the Network stack uses: the first azCount of Fn::GetAZs (which lists the
    region's available zones as DescribeAvailabilityZones does)."""
    zones = ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])
    return sorted(z["ZoneName"] for z in zones["AvailabilityZones"] if z.get("ZoneType", "availability-zone")
                  == "availability-zone")[:settings.network.az_count]


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
    need = compile_node.vcpu + settings.endpoint.max_replicas * serve_node.vcpu
    findings = []
    for capacity in settings.node_pool.node_capacity_types:
        code = INF_QUOTAS[capacity]
        value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
        ok = value >= need
        findings.append(Finding(ok, f"Inf {capacity} vCPU quota ({code})",
                                f"{value:g} vCPU" + ("" if ok else
                                f", but the compile node ({compile_node.name}) and maxReplicas={settings.endpoint.max_replicas} "
                                f"{serve_node.name} nodes need {need}: request an increase in Service Quotas")))
    return findings


def connection_available(client, settings: Settings) -> Finding:
    arn = settings.release.pipeline_connection_arn
    status = client.get_connection(ConnectionArn=arn)["Connection"]["ConnectionStatus"]
    ok = status == "AVAILABLE"
    return Finding(ok, "source connection", f"{arn} is {status}" + ("" if ok else
                   ": finish the handshake in the console (Developer Tools, Settings, Connections)"))


def artifacts_exist(referenced: Referenced, unaskable: set[str], registries: Registries,
                    settings: Settings) -> list[Finding]:
    """Every image and chart the synthesized app pulls, in its registry (CodeBuild's own images
    are in none: `unaskable`, from the inventory)."""
    items = [("image", ref, lambda ref=ref: registries.image_exists(ref))
             for ref in sorted(referenced.images - unaskable)]
    items += [("chart", f"{repo} {chart} {version}",
               lambda r=repo, c=chart, v=version: registries.chart_exists(r, c, v))
              for repo, chart, version in sorted(referenced.charts)]
    findings = []
    for kind, name, exists in items:
        try:
            found = exists()
        except Unknown as error:
            findings.append(unknown(f"{kind} {name}", error, settings))
            continue
        findings.append(Finding(found, f"{kind} {name}", "exists" if found else
                                "not found in its registry: pin one that exists and update "
                                "stacks/external_artifacts.yaml with the evidence"))
    return findings


def ami_parameter(kubernetes_version: str, alias: str) -> str | None:
    """The SSM parameter Karpenter 1.14.1 reads for an al2023 alias's Neuron (x86_64) AMI:
    aws/karpenter-provider-aws v1.14.1 pkg/providers/amifamily/al2023.go, resolvePath:
    name "recommended" for @latest, else amazon-eks-node-al2023-<arch>-<variant>-<k8s>-<version>,
    under /aws/service/eks/optimized-ami/<k8s>/amazon-linux-2023/<arch>/<variant>/<name>/image_id.
    None for another family (Bottlerocket's paths are not derived here)."""
    family, _, version = alias.partition("@")
    if family != "al2023":
        return None
    name = "recommended" if version == "latest" else \
        f"amazon-eks-node-al2023-x86_64-neuron-{kubernetes_version}-{version}"
    return f"/aws/service/eks/optimized-ami/{kubernetes_version}/amazon-linux-2023/x86_64/neuron/{name}/image_id"


def ami_published(ssm, settings: Settings) -> Finding:
    alias, version = settings.node_pool.node_ami_alias, settings.cluster.kubernetes_version
    check = f"AMI {alias} for Kubernetes {version}"
    name = ami_parameter(version, alias)
    if name is None:
        return Finding(False, check, "not checked: only al2023 aliases are resolved here", warning=True)
    try:
        image = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in SSM_UNKNOWN:
            return unknown(check, error, settings)
        if code != "ParameterNotFound":
            raise
        return Finding(False, check, f"no SSM parameter {name}: Karpenter would find no Neuron AMI and launch "
                                     "no inf2 node; set nodeAmiAlias to a release published for this version")
    return Finding(True, check, f"{name} is {image}")


def lambda_concurrency(client, needs: dict[str, int]) -> Finding:
    """The account's unreserved Lambda concurrency against the most one stack's deploy holds
    (tools/preflight/parallelism.py). Field names: botocore's lambda service model,
    GetAccountSettings -> AccountLimit.ConcurrentExecutions, UnreservedConcurrentExecutions."""
    limit = client.get_account_settings()["AccountLimit"]
    free, total = limit["UnreservedConcurrentExecutions"], limit["ConcurrentExecutions"]
    stack, need = min(needs.items(), key=lambda item: (-item[1], item[0]))
    ok = free >= need
    return Finding(ok, "Lambda concurrency", f"{free} unreserved of {total}; {stack}'s deploy can run {need} at once"
                   + ("" if ok else ": its custom resources would be throttled; request a higher 'Concurrent "
                      "executions' quota (Service Quotas, AWS Lambda) or free reserved concurrency"))


def weights_exist(settings: Settings, s3, registries: Registries) -> Finding:
    check = f"weights {settings.model.model_id}@{settings.model.model_revision}"
    if settings.model.weights_source == "hub":
        try:
            found = registries.hub_revision_exists(settings.model.model_id, settings.model.model_revision)
        except Unknown as error:
            return unknown(check, error, settings)
        return Finding(found, check, "on the hub" if found else
                       "not on the hub (withdrawn?): mirror a copy with sd21-mirror-weights and set weightsSource")
    from sd21.s3 import parse_url
    from sd21.contract import WEIGHTS_MANIFEST as MANIFEST

    bucket, prefix = parse_url(settings.model.weights_source.rstrip("/") + "/")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + MANIFEST, MaxKeys=1).get("Contents", [])
    if not listing:
        return Finding(False, check, f"no {MANIFEST} under {settings.model.weights_source}: run "
                                     f"sd21-mirror-weights --dest {settings.model.weights_source}")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read())
    same = (manifest.get("model_id"), manifest.get("revision")) == (settings.model.model_id, settings.model.model_revision)
    return Finding(same, check, f"mirrored in {settings.model.weights_source}" if same else
                   f"{settings.model.weights_source} mirrors {manifest.get('model_id')}@{manifest.get('revision')}: "
                   "mirror this revision to another prefix")
