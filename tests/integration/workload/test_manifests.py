"""Workload manifests: schema-valid, and joined to the rest of the product."""
import re

from sd21.contract import ColdStartMetricsEnv, CompileEnv, ServerEnv, StageEnv

from stacks.cluster.karpenter.node_pool import NEURON_TAINT, NODE_POOL_NAME
from stacks.cluster.neuron.hardware import NEURON_DEVICE
from stacks.workload.cold_start.metrics_chart import NAME as COLD_START_METRICS
from stacks.workload.autoscaling.autoscaling import KEDA_NAMESPACE
from tests.conftest import logical_id
from tests.support.validation import validate_all
from tests.integration.workload.conftest import export_value
from tests.support.k8s_objects import container, env, pod_spec


def test_every_workload_object_validates_strictly(workload_objects, application):
    assert {o["kind"] for o in workload_objects} >= {
        "Namespace", "ServiceAccount", "Job", "Deployment", "Service", "Ingress", "PodDisruptionBudget",
        "ScaledObject"}
    assert validate_all(workload_objects, application.settings.cluster.kubernetes_version) == []


def test_no_cluster_wide_rbac_for_the_workload(workload_objects):
    assert not [o for o in workload_objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role",
                                                             "RoleBinding")]
    for kind in ("Job", "Deployment"):
        for o in workload_objects:
            if o["kind"] == kind:
                assert pod_spec(o)["automountServiceAccountToken"] is False


def test_pod_identity_associations_point_at_real_service_accounts(workload_template, workload_objects,
                                                                     storage_template, application):
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in workload_objects
                if o["kind"] == "ServiceAccount"}
    # The endpoint's, whose roles live beside the bucket. KEDA's operator (a chart's
    # ServiceAccount) is tests/integration/stacks/test_jobs.py's; the cold-start metrics pod's is below.
    associations = [r["Properties"] for r in workload_template["Resources"].values()
                    if r["Type"] == "AWS::EKS::PodIdentityAssociation" and r["Properties"]["Namespace"] != KEDA_NAMESPACE
                    and r["Properties"]["ServiceAccount"] != COLD_START_METRICS]
    assert len(associations) == 2
    bound = {}
    for association in associations:
        assert (association["Namespace"], association["ServiceAccount"]) in accounts
        role = export_value(storage_template, "${ImportValue:" + association["RoleArn"]["Fn::ImportValue"] + "}")
        bound[association["ServiceAccount"]] = role["Fn::GetAtt"][0]
    access = application.storage.access
    logical = application.storage.get_logical_id
    assert bound == {"sd21-compile": logical(access.compile_role.node.default_child),
                     "sd21-serve": logical(access.serve_role.node.default_child)}
    # Each pod runs as the account its role is bound to.
    used = {(o["kind"], o["metadata"]["name"].startswith("sd21-compile-") or o["metadata"]["name"]):
            pod_spec(o)["serviceAccountName"] for o in workload_objects if o["kind"] in ("Job", "Deployment")}
    assert used == {("Job", True): "sd21-compile", ("Deployment", "sd21-inference"): "sd21-serve",
                    ("Deployment", COLD_START_METRICS): COLD_START_METRICS}


def test_the_cold_start_metrics_pod_runs_on_system_nodes_and_may_only_publish_metrics(
        workload, workload_objects, workload_template, application):
    """One small pod (its chart alone: tests/unit/stacks/workload/cold_start) in the workload's
    namespace, on the cluster's system nodes, whose role may only put metrics (in our namespace)."""
    from stacks.cluster.eks.cluster import SYSTEM_NODE_LABEL

    deployment = workload("Deployment", COLD_START_METRICS)
    pod = pod_spec(deployment)
    assert deployment["metadata"]["namespace"] == workload("Namespace")["metadata"]["name"]
    key, value = SYSTEM_NODE_LABEL
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]
    assert ColdStartMetricsEnv.from_env(env(pod["containers"][0])).cluster == application.settings.cluster.cluster_name
    (association,) = [r["Properties"] for r in workload_template["Resources"].values()
                      if r["Type"] == "AWS::EKS::PodIdentityAssociation"
                      and r["Properties"]["ServiceAccount"] == COLD_START_METRICS]
    role = association["RoleArn"]["Fn::GetAtt"][0]
    statements = [s for r in workload_template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
                  and {"Ref": role} in r["Properties"]["Roles"] for s in r["Properties"]["PolicyDocument"]["Statement"]]
    assert [(s["Action"], s["Condition"]) for s in statements] == [
        ("cloudwatch:PutMetricData", {"StringEquals": {"cloudwatch:namespace": "SD21"}})]


def _role_statements(storage_template, application, role) -> list[dict]:
    role_id = application.storage.get_logical_id(role.node.default_child)
    statements = []
    for resource in storage_template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    assert statements
    return statements


def _resource_suffixes(statement) -> list[str]:
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return [r["Fn::Join"][1][-1] if isinstance(r, dict) else r for r in resources]


def test_s3_access_is_scoped_to_model_prefixes_without_wildcard_actions(storage_template, application):
    name = application.settings.model.model_name
    access = application.storage.access
    serve = _role_statements(storage_template, application, access.serve_role)
    compile_ = _role_statements(storage_template, application, access.compile_role)
    for statement in serve + compile_:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in a and a.startswith("s3:") for a in actions), statement
    for statement in serve:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if statement["Sid"] in ("WriteJobRequests", "ReadJobs", "WriteJobResults"):  # sd21.jobs, under jobs/
            expected = {"WriteJobRequests": (["s3:PutObject"], ["/jobs/*/request.json"]),
                        "ReadJobs": (["s3:GetObject"], ["/jobs/*"]),
                        "WriteJobResults": (["s3:PutObject"], ["/jobs/*/image.png", "/jobs/*/status.json"])}
            assert (actions, sorted(_resource_suffixes(statement))) == expected[statement["Sid"]]
            continue
        assert set(actions) <= {"s3:GetObject", "s3:ListBucket"}  # its model: read only
        if "s3:ListBucket" in actions:
            assert statement["Condition"] == {"StringLike": {"s3:prefix": f"models/{name}/*"}}
        else:
            assert _resource_suffixes(statement) == [f"/models/{name}/*"]
    for statement in compile_:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "s3:ListBucket" in actions:
            assert statement["Condition"] == {"StringLike": {"s3:prefix": "models/*"}}
        elif "s3:DeleteObject" in actions:
            assert actions == "s3:DeleteObject" or actions == ["s3:DeleteObject"]
            assert _resource_suffixes(statement) == [f"/models/{name}/.uploads/*"]
        else:
            assert _resource_suffixes(statement) == ["/models/*"]


def test_images_are_the_stack_repository_at_the_image_tag(workload, storage_template, application):
    """Serving runs the release's tag; the compile Job the tag its model version got once
    (compile-<version>, pushed by the release pipeline's image build)."""
    repository_id = application.storage.get_logical_id(application.storage.repository.node.default_child)
    job = workload("Job")
    version = job["metadata"]["labels"]["sd21.aws/model-version"]
    for image, tag in ((container(job, "compile")["image"], f"compile-{version}"),
                       (container(workload("Deployment"), "stage")["image"], application.settings.release.image_tag),
                       (container(workload("Deployment"), "server")["image"], application.settings.release.image_tag)):
        match = re.fullmatch(r".*\.dkr\.ecr\..*/(\$\{ImportValue:[^}]+\}):(.+)", image)
        assert match and match.group(2) == tag, image
        assert export_value(storage_template, match.group(1)) == {"Ref": repository_id}


def test_compile_job_and_deployment_agree_on_the_model_version(workload, application):
    """The Job and the pods name one version (what sd21-compile itself computes from the
    Job's env is asked in tests/pods; no recomputation with the chart's own function here)."""
    job, deployment = workload("Job"), workload("Deployment")
    compile_ = CompileEnv.from_env(env(container(job, "compile")))
    version = compile_.model_version
    assert re.fullmatch(r"[0-9a-f]{16}", version)
    # The name carries the version (new inputs, new Job) and its template's hash (a Job's template is immutable).
    assert re.fullmatch(rf"sd21-compile-{version}-[0-9a-f]{{6}}", job["metadata"]["name"])
    stage = StageEnv.from_env(env(container(deployment, "stage")))
    server = ServerEnv.from_env(env(container(deployment, "server")))
    assert stage.model_version == server.model_version == version
    assert stage.model_name == server.model_name == compile_.model_name
    assert stage.bucket == server.jobs.bucket == compile_.bucket


def test_pods_are_created_after_their_pod_identity_associations_take_effect(workload_template, application):
    workload = application.workload
    resources = workload_template["Resources"]
    for manifest, binding in ((workload.manifests.compile_manifest, workload.compile_binding),
                              (workload.manifests.inference_manifest, workload.serve_binding)):
        wait = resources[logical_id(binding.effective)]
        assert wait["Type"] == "Custom::PodIdentityPropagation" and wait["Properties"]["Seconds"] >= 10
        assert logical_id(binding.association) in wait["DependsOn"]
        assert logical_id(binding.effective) in resources[logical_id(manifest)]["DependsOn"]


# inf2.xlarge: 1 Inferentia2 device (2 NeuronCores), 4 vCPU, 16 GiB. Allocatable as
# Karpenter computes it: 7.5% VM overhead, kube-reserved for 4 vCPU and 58 pods, eviction 100Mi.
INF2_XLARGE = {"devices": 1, "cpu_milli": 4000 - 80, "memory_mib": int(16384 * 0.925) - (11 * 58 + 255) - 100}


def _milli(cpu: str) -> int:
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


def _mib(memory: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(memory[:-2]) * units[memory[-2:]]


def test_inference_pod_fits_inf2_xlarge(workload, cluster_objects):
    deployment = workload("Deployment")
    server, stage = container(deployment, "server"), container(deployment, "stage")
    assert server["resources"]["limits"][NEURON_DEVICE] == "1"
    assert int(server["resources"]["limits"][NEURON_DEVICE]) <= INF2_XLARGE["devices"]
    daemon_sets = [o for o in cluster_objects if o["kind"] == "DaemonSet"]
    daemon_cpu = sum(_milli(c["resources"]["requests"]["cpu"]) for d in daemon_sets for c in pod_spec(d)["containers"])
    daemon_mem = sum(_mib(c["resources"]["requests"]["memory"]) for d in daemon_sets for c in pod_spec(d)["containers"])
    # Plus the EKS DaemonSets (vpc-cni ~25m, kube-proxy 100m, pod identity agent) on every node.
    eks_daemons_cpu, eks_daemons_mem = 150, 256
    pod_cpu = max(_milli(server["resources"]["requests"]["cpu"]), _milli(stage["resources"]["requests"]["cpu"]))
    pod_mem = max(_mib(server["resources"]["requests"]["memory"]), _mib(stage["resources"]["requests"]["memory"]))
    assert pod_cpu + daemon_cpu + eks_daemons_cpu <= INF2_XLARGE["cpu_milli"]
    assert pod_mem + daemon_mem + eks_daemons_mem <= INF2_XLARGE["memory_mib"]


def test_inference_pod_uses_my_scheduler_and_the_inf2_pool(workload, cluster_objects):
    pod = pod_spec(workload("Deployment"))
    config = next(o for o in cluster_objects if o["kind"] == "ConfigMap" and "my-scheduler" in o["metadata"]["name"])
    assert f"schedulerName: {pod['schedulerName']}" in "".join(config["data"].values())
    assert {"key": NEURON_TAINT.key, "operator": "Exists", "effect": NEURON_TAINT.effect} in pod["tolerations"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "karpenter.sh/nodepool", "operator": "In", "values": [NODE_POOL_NAME]} in \
        terms[0]["matchExpressions"]
    pool = next(o for o in cluster_objects if o["kind"] == "NodePool")
    assert pool["metadata"]["name"] == NODE_POOL_NAME