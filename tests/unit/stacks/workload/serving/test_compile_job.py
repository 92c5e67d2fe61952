"""The compile Job chart alone: its name follows its version and its pod template, its pod
starts with the compiler environment the version hashes, and it is sized and protected."""
from __future__ import annotations

import re
from dataclasses import replace

import cdk8s
from sd21.contract import CompileEnv

from stacks.cluster.neuron.hardware import NEURON_DEVICE
from stacks.workload.serving.compile_job import SCRATCH_DIR, CompileJobChart
from stacks.workload.serving.spec import WorkloadSpec, compile_inputs
from tests.unit.stacks.workload.charts import MODEL, app_with_identities, container, env, pod_spec, spec, told


def _job(workload: WorkloadSpec) -> dict:
    app, identities = app_with_identities()
    chart = CompileJobChart(app, "compile", spec=workload, identities=identities)
    return cdk8s.ApiObject.of(chart.job).to_json()


def test_the_name_is_the_model_version_and_a_hash_of_the_pod_template():
    job = _job(spec())
    version = job["metadata"]["labels"]["sd21.aws/model-version"]
    assert version == MODEL.version and re.fullmatch(r"[0-9a-f]{16}", version)
    assert re.fullmatch(rf"sd21-compile-{version}-[0-9a-f]{{6}}", job["metadata"]["name"])
    assert told(container(job, "compile"), CompileEnv).model_version == version


def test_the_compile_is_told_the_model_the_bucket_and_its_scratch_space():
    """As sd21-compile parses its env."""
    assert told(container(_job(spec()), "compile"), CompileEnv) == CompileEnv(
        backend="neuron", bucket="sd21-models-example", model_name=MODEL.name, model_version=MODEL.version,
        model_id=MODEL.id, model_revision=MODEL.revision, weights_source=MODEL.id, neuron_sdk=MODEL.neuron_sdk,
        workdir=SCRATCH_DIR)


def test_any_change_to_the_compile_pod_template_makes_a_new_job():
    """CloudFormation cannot update a Job's template in place: its name must change with it."""
    base = _job(spec())
    assert _job(spec())["metadata"]["name"] == base["metadata"]["name"]
    for changed in (_job(spec(image="registry.example/sd21:another-commit")),
                    _job(spec(model=replace(MODEL, weights_source="s3://mirror-bucket/weights/"))),
                    _job(spec(model=replace(MODEL, revision="0" * 40))),
                    _job(spec(compile_run=1))):
        assert changed["metadata"]["name"] != base["metadata"]["name"]
        assert changed["spec"]["template"] != base["spec"]["template"]


def test_releases_of_one_version_apply_the_same_compile_job_when_its_image_is_pinned():
    """Same name, same template: `kubectl apply` leaves the Job (running or finished) alone,
    so a release that keeps the compile inputs neither kills a compile nor starts an inf2 node."""
    pinned = "registry.example/sd21:compile-pinned"
    first = _job(spec(image="registry.example/sd21:commit-a", compile_image=pinned))
    second = _job(spec(image="registry.example/sd21:commit-b", compile_image=pinned))
    assert second == first
    assert container(first, "compile")["image"] == pinned


def test_every_compile_input_changes_the_version_and_a_new_run_only_the_job():
    pinned = "registry.example/sd21:compile-pinned"
    base = _job(spec(compile_image=pinned))
    for model in (replace(MODEL, id="someone/other-model"), replace(MODEL, revision="0" * 40),
                  replace(MODEL, neuron_sdk="2.99.0")):
        changed = _job(spec(model=model, compile_image=pinned))
        assert changed["metadata"]["labels"]["sd21.aws/model-version"] != MODEL.version, model
        assert changed["metadata"]["name"] != base["metadata"]["name"], model
    again = _job(spec(compile_run=1, compile_image=pinned))
    assert again["metadata"]["labels"] == base["metadata"]["labels"]  # the same artifact ...
    assert again["metadata"]["name"] != base["metadata"]["name"]      # ... by a new Job


def test_the_job_fetches_the_weights_from_the_hub_or_the_mirror():
    assert told(container(_job(spec()), "compile"), CompileEnv).weights_source == MODEL.id
    mirrored = spec(model=replace(MODEL, weights_source="s3://weights-mirror-example/sd21/"))
    assert told(container(_job(mirrored), "compile"), CompileEnv).weights_source == "s3://weights-mirror-example/sd21/"


def test_the_compile_pod_starts_with_the_compiler_environment_the_version_hashes():
    """Set in the pod spec, not by sd21-compile after diffusers has imported torch_xla."""
    compile_env = env(container(_job(spec()), "compile"))
    hashed = dict(compile_inputs(model_id=MODEL.id, model_revision=MODEL.revision,
                                 neuron_sdk=MODEL.neuron_sdk).compiler_env)
    assert hashed and {name: compile_env.get(name) for name in hashed} == hashed
    assert hashed["PJRT_DEVICE"] == "CPU" and hashed["NEURON_FUSE_SOFTMAX"] == "1"


def test_compile_job_is_sized_and_protected():
    job = _job(spec())
    job_spec = job["spec"]
    assert job_spec["backoffLimit"] >= 1 and job_spec["activeDeadlineSeconds"] > 0
    # Kept once finished: a Job deleted by a TTL would be created again by the next release.
    assert "ttlSecondsAfterFinished" not in job_spec
    assert job_spec["template"]["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    compile_ = container(job, "compile")
    assert compile_["command"] == ["sd21-compile"]
    memory_mib = int(compile_["resources"]["requests"]["memory"].removesuffix("Mi"))
    assert memory_mib > 16 * 1024, "16 GiB is known to be too little for the SD2.1 compile"
    all_resources = {**compile_["resources"].get("requests", {}), **compile_["resources"].get("limits", {})}
    assert NEURON_DEVICE not in all_resources and "aws.amazon.com/neuroncore" not in all_resources
    shm = next(v for v in pod_spec(job)["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"mountPath": "/dev/shm", "name": "shm"} in compile_["volumeMounts"]


def test_compile_has_a_writable_working_directory_tmp_and_var_tmp():
    """neuronx-cc writes its log to the working directory, work files under /tmp and its
    cache under /var/tmp; the root filesystem is read-only (run for real in tests/pods)."""
    compile_ = container(_job(spec()), "compile")
    assert compile_["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in compile_["volumeMounts"]}
    assert {compile_["workingDir"], "/tmp", "/var/tmp"} <= mounts
    assert told(compile_, CompileEnv).workdir == compile_["workingDir"] and env(compile_)["TMPDIR"] == "/tmp"
