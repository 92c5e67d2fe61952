"""Joins between the rendered Kubernetes objects and the synthesized CloudFormation.

Each name that crosses a layer is checked where it lands: the node role, the
discovery tags, the extension's DNS name and port, the Neuron taint, the
scheduler version, the system-node label and the deployment order.
"""
import yaml
from aws_cdk import CfnElement

from stacks.cluster.neuron.hardware import INF2_FAMILY
from stacks.cluster.eks.cluster import SYSTEM_NODE_LABEL


def _resources(template, type_):
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == type_}


def _tags(resource):
    return {t["Key"]: t["Value"] for t in resource["Properties"].get("Tags", [])}


def _logical_id(stack, construct):
    while not isinstance(construct, CfnElement):
        construct = construct.node.default_child
    return stack.get_logical_id(construct)


def _selector_tags(terms):
    assert len(terms) == 1 and set(terms[0]) == {"tags"}, terms
    return terms[0]["tags"]


def test_node_class_role_is_the_node_role_with_the_ec2_linux_access_entry(find, cluster_template, application):
    entries = [e for e in _resources(cluster_template, "AWS::EKS::AccessEntry").values()
               if e["Properties"].get("Type") == "EC2_LINUX"]
    assert len(entries) == 1
    role_id = entries[0]["Properties"]["PrincipalArn"]["Fn::GetAtt"][0]
    assert cluster_template["Resources"][role_id]["Type"] == "AWS::IAM::Role"
    assert role_id == _logical_id(application.cluster, application.cluster.karpenter.node_role.role)
    assert find("EC2NodeClass", "inf2")["spec"]["role"] == f"${{Ref:{role_id}}}"


def test_subnet_selector_matches_exactly_the_private_subnets(find, network_template, application):
    wanted = _selector_tags(find("EC2NodeClass", "inf2")["spec"]["subnetSelectorTerms"])
    subnets = _resources(network_template, "AWS::EC2::Subnet")
    selected = {lid for lid, s in subnets.items() if wanted.items() <= _tags(s).items()}
    private = {lid for lid, s in subnets.items() if _tags(s).get("aws-cdk:subnet-type") == "Private"}
    assert selected == private
    assert len(selected) == application.settings.network.az_count


def test_security_group_selector_matches_exactly_the_node_security_group(find, cluster_template, application):
    wanted = _selector_tags(find("EC2NodeClass", "inf2")["spec"]["securityGroupSelectorTerms"])
    groups = _resources(cluster_template, "AWS::EC2::SecurityGroup")
    selected = [lid for lid, g in groups.items() if wanted.items() <= _tags(g).items()]
    assert selected == [_logical_id(application.cluster, application.cluster.eks.node_security_group)]
    assert wanted == dict([application.settings.cluster.discovery_tag])


def test_my_scheduler_extender_is_the_extension_service(find):
    config = yaml.safe_load(find("ConfigMap", "my-scheduler-config")["data"]["my-scheduler-config.yaml"])
    service = find("Service", "neuron-scheduler-extension")
    port = service["spec"]["ports"][0]
    (extender,) = config["extenders"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert extender["urlPrefix"] == f"http://{name}.{namespace}.svc.cluster.local:{port['port']}"
    assert port["port"] == 12345
    # ... and the Service really reaches the extension's pods on the port they listen on.
    deployment = find("Deployment", "neuron-scheduler-extension")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert port["targetPort"] in [p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]]


def _tolerates(tolerations, taint):
    for t in tolerations:
        if t.get("effect") not in (None, taint["effect"]):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, taint["key"]):
            return True
        if t.get("operator", "Equal") == "Equal" and t.get("key") == taint["key"] and t.get("value") == taint.get("value"):
            return True
    return False


def test_device_plugin_runs_on_every_node_the_node_pool_launches(find):
    node_pool = find("NodePool", "inf2")["spec"]["template"]["spec"]
    plugin = find("DaemonSet", "neuron-device-plugin")["spec"]["template"]["spec"]
    assert node_pool["taints"], "the inf2 NodePool must taint its nodes"
    for taint in node_pool["taints"]:
        assert _tolerates(plugin["tolerations"], taint), taint
    families = next(r["values"] for r in node_pool["requirements"] if r["key"] == "karpenter.k8s.aws/instance-family")
    assert families == [INF2_FAMILY]
    (term,) = plugin["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (expression,) = term["matchExpressions"]
    assert expression["key"] == "node.kubernetes.io/instance-type" and expression["operator"] == "In"
    for size in ("xlarge", "8xlarge", "24xlarge", "48xlarge"):
        assert f"inf2.{size}" in expression["values"]


def test_scheduler_image_is_of_the_cluster_minor(find, cluster_template):
    (cluster,) = _resources(cluster_template, "AWS::EKS::Cluster").values()
    minor = cluster["Properties"]["Version"]
    (container,) = find("Deployment", "my-scheduler")["spec"]["template"]["spec"]["containers"]
    repository, tag = container["image"].rsplit(":", 1)
    assert repository == "registry.k8s.io/kube-scheduler"
    assert tag.startswith(f"v{minor}.")


def test_schedulers_run_on_the_system_node_group(find, cluster_template):
    (nodegroup,) = _resources(cluster_template, "AWS::EKS::Nodegroup").values()
    key, value = SYSTEM_NODE_LABEL
    assert nodegroup["Properties"]["Labels"][key] == value
    for name in ("my-scheduler", "neuron-scheduler-extension"):
        affinity = find("Deployment", name)["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term["matchExpressions"] == [{"key": key, "operator": "In", "values": [value]}], name


def test_leader_election_lease_is_the_one_the_role_allows(find):
    config = yaml.safe_load(find("ConfigMap", "my-scheduler-config")["data"]["my-scheduler-config.yaml"])
    election = config["leaderElection"]
    role = find("Role", "my-scheduler-leader-election")
    assert role["metadata"]["namespace"] == election["resourceNamespace"]
    (rule,) = role["rules"]
    assert rule["resources"] == ["leases"] and rule["resourceNames"] == [election["resourceName"]]
    assert config["profiles"] == [{"schedulerName": "my-scheduler"}]


def test_node_pool_waits_for_the_karpenter_release_and_its_node_class(manifest_of, application):
    karpenter = application.cluster.karpenter
    release = _logical_id(application.cluster, karpenter.chart)
    node_class = manifest_of("EC2NodeClass", "inf2")
    assert {release, node_class.logical_id} <= set(manifest_of("NodePool", "inf2").depends_on)
    # The node class needs the CRDs (release) and, for its nodes to join, the access entry.
    access_entry = _logical_id(application.cluster, karpenter.node_role.access_entry)
    assert {release, access_entry} <= set(node_class.depends_on)


def test_my_scheduler_is_applied_after_the_extension(manifest_of):
    extension = manifest_of("Service", "neuron-scheduler-extension")
    assert extension.logical_id in manifest_of("Deployment", "my-scheduler").depends_on
