"""The compile Job: traces the model for Inferentia2 and uploads one versioned
artifact to S3.

Name: `sd21-compile-<version>-<hash of the pod template>`. The version hashes every
compile input (model, revision, Neuron SDK, compiler flags and environment:
sd21.artifact.CompileInputs); the template's hash is there because a Job's template is
immutable, so a changed template (env such as the weights source, mounts, image) must
be a new Job, or `kubectl apply` of the manifest fails.

A release that keeps the version must leave this Job alone: the KubernetesManifest
re-applies the chart with `kubectl apply --prune` (aws-cdk-lib aws-eks-v2 kubectl-handler
apply/__init__.py; pruning is the cluster's default), so a renamed Job deletes the old
one, killing a compile in progress, and the new one's pod starts an inf2 node only to
find the artifact in S3. So the Job's name and template must not change between
releases of one version:
* its image is `spec.compile_image`, a reference the stack keeps the same for every
  release of a version (such as a tag made from the version), not the release's own
  image, which changes with every commit; then the applied Job is byte-identical and
  `kubectl apply` leaves it, finished or running, untouched;
* it has no ttlSecondsAfterFinished: a deleted Job would not come back (CloudFormation
  re-applies a manifest only when it changes), and the inference pods would wait for an
  artifact nobody makes. The old version's Job goes when the version changes (pruned).
A Job that failed (after its backoffLimit) stays failed: to run the compile of the same
version again, raise the `compileRun` setting, which is in the pod template (an
annotation), so the next release makes a new Job and prunes the failed one.
When no `spec.compile_image` is given (charts rendered alone), the Job runs the release's
image, which is then in the template's hash: each release makes a new Job.
"""
import hashlib
import json
import re

import cdk8s
import cdk8s_plus_27 as kplus
from constructs import Construct
from sd21.contract import CompileEnv

from k8s_charts.common import default_seccomp, drop_all_capabilities, report_failures_in_status
from stacks.workload.serving.identities import WorkloadIdentities
from stacks.workload.serving.placement import run_on_inf2_pool
from stacks.workload.serving.pod_security import restricted_container, restricted_pod
from stacks.workload.serving.sizing import COMPILE_CPU, COMPILE_MEMORY_GIB
from stacks.workload.serving.spec import WorkloadSpec

# Writable places, each an emptyDir (the root filesystem is read-only):
SCRATCH_DIR = "/scratch"  # working directory (neuronx-cc writes log-neuron-cc.txt there), weights, artifact
SCRATCH_GIB = 100
TMP_GIB = 16       # /tmp: TMPDIR, the compiler's /tmp/<user>/neuroncc_compile_workdir
VAR_TMP_GIB = 4    # /var/tmp: the Neuron compile cache's default place
SHM_GIB = 16


class CompileJobChart(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str, *, spec: WorkloadSpec, identities: WorkloadIdentities) -> None:
        super().__init__(scope, id)
        self.job = kplus.Job(
            self,
            "Job",
            metadata=cdk8s.ApiObjectMetadata(
                name=f"sd21-compile-{spec.model_version}",  # + the template's hash, below
                namespace=identities.workload_namespace.name,
                labels={"app.kubernetes.io/name": "sd21-compile", "sd21.aws/model-version": spec.model_version},
            ),
            service_account=identities.compile_account,
            backoff_limit=2,
            active_deadline=cdk8s.Duration.hours(3),
            # No ttl_after_finished: see the module docstring.
            security_context=restricted_pod(),
            # A node drained mid-compile would waste the hour of work done so far.
            pod_metadata=cdk8s.ApiObjectMetadata(annotations={
                "karpenter.sh/do-not-disrupt": "true",
                # In the template's hash, not in the version: a new Job for the same artifact.
                "sd21.aws/compile-run": str(spec.compile_run),
            }),
        )
        def disk(name: str, gib: int) -> kplus.Volume:
            return kplus.Volume.from_empty_dir(self, name, name, size_limit=cdk8s.Size.gibibytes(gib))

        shm = kplus.Volume.from_empty_dir(self, "shm", "shm", medium=kplus.EmptyDirMedium.MEMORY,
                                          size_limit=cdk8s.Size.gibibytes(SHM_GIB))
        container = self.job.add_container(
            name="compile",
            image=spec.compile_image or spec.image,
            command=["sd21-compile"],
            working_dir=SCRATCH_DIR,
            env_variables={
                name: kplus.EnvValue.from_value(value)
                for name, value in {
                    **spec.model_env(),
                    **CompileEnv(model_id=spec.model.id, model_revision=spec.model.revision,
                                 weights_source=spec.model.weights, neuron_sdk=spec.model.neuron_sdk,
                                 workdir=SCRATCH_DIR).to_env(),
                    "HF_HOME": f"{SCRATCH_DIR}/hf",
                    "HOME": SCRATCH_DIR,
                    "TMPDIR": "/tmp",
                    # Read when diffusers imports torch_xla, before any sd21 code could set it.
                    **spec.compiler_env(),
                }.items()
            },
            resources=kplus.ContainerResources(
                cpu=kplus.CpuResources(request=kplus.Cpu.units(COMPILE_CPU)),
                memory=kplus.MemoryResources(request=cdk8s.Size.gibibytes(COMPILE_MEMORY_GIB),
                                             limit=cdk8s.Size.gibibytes(COMPILE_MEMORY_GIB + 16)),
                ephemeral_storage=kplus.EphemeralStorageResources(
                    request=cdk8s.Size.gibibytes(SCRATCH_GIB + TMP_GIB + VAR_TMP_GIB)),
            ),
            security_context=restricted_container(),
        )
        container.mount(SCRATCH_DIR, disk("scratch", SCRATCH_GIB))
        container.mount("/tmp", disk("tmp", TMP_GIB))
        container.mount("/var/tmp", disk("var-tmp", VAR_TMP_GIB))
        container.mount("/dev/shm", shm)
        drop_all_capabilities(self.job, 0)
        default_seccomp(self.job)
        report_failures_in_status(self.job)
        # Tracing runs on the CPU (torch_neuronx.trace cpu_backend=True with --target inf2,
        # PJRT_DEVICE=CPU, sd21/backends.py): the Job asks for no Neuron device, so it never
        # waits for or holds one.
        run_on_inf2_pool(self.job)
        api = cdk8s.ApiObject.of(self.job)
        api.add_json_patch(cdk8s.JsonPatch.replace(
            "/metadata/name", f"sd21-compile-{spec.model_version}-{template_hash(api.to_json())}"))


# Deploy-time values (the bucket, the repository) appear as CDK token strings whose
# numbering depends on construction order; they are stable per stack, so they are masked.
_TOKEN = re.compile(r"\$\{Token\[[^\]]*\]\}")


def template_hash(job: dict) -> str:
    """Six hex characters that change whenever the Job's pod template changes."""
    template = _TOKEN.sub("<token>", json.dumps(job["spec"]["template"], sort_keys=True))
    return hashlib.sha256(template.encode()).hexdigest()[:6]
