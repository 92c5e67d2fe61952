"""The compile Job: traces the model for Inferentia2 and uploads one versioned
artifact to S3. Its name carries the artifact version and a hash of its pod
template: a Job's template is immutable, so any change to it (image, env such as
the weights source, mounts) makes a new Job, which finds the artifact in S3 and
exits at once when the version is unchanged; an unchanged template leaves the
finished Job alone."""
import hashlib
import json
import re

import cdk8s
import cdk8s_plus_27 as kplus
from constructs import Construct

from k8s_charts.common import default_seccomp, drop_all_capabilities, report_failures_in_status
from k8s_charts.workload.identities import WorkloadIdentities
from k8s_charts.workload.placement import run_on_inf2_pool
from k8s_charts.workload.pod_security import restricted_container, restricted_pod
from k8s_charts.workload.sizing import COMPILE_CPU, COMPILE_MEMORY_GIB
from k8s_charts.workload.spec import WorkloadSpec

# Writable places, each an emptyDir (the root filesystem is read-only):
SCRATCH_DIR = "/scratch"  # working directory (neuronx-cc writes log-neuron-cc.txt there), weights, artifact
SCRATCH_GIB = 100
TMP_GIB = 16       # /tmp: TMPDIR, the compiler's /tmp/<user>/neuroncc_compile_workdir
VAR_TMP_GIB = 4    # /var/tmp: the Neuron compile cache's default place
SHM_GIB = 16


class CompileJobChart(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str, *, spec: WorkloadSpec, identities: WorkloadIdentities) -> None:
        super().__init__(scope, id)
        settings = spec.settings
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
            ttl_after_finished=cdk8s.Duration.days(1),
            security_context=restricted_pod(),
            # A node drained mid-compile would waste the hour of work done so far.
            pod_metadata=cdk8s.ApiObjectMetadata(annotations={"karpenter.sh/do-not-disrupt": "true"}),
        )
        def disk(name: str, gib: int) -> kplus.Volume:
            return kplus.Volume.from_empty_dir(self, name, name, size_limit=cdk8s.Size.gibibytes(gib))

        shm = kplus.Volume.from_empty_dir(self, "shm", "shm", medium=kplus.EmptyDirMedium.MEMORY,
                                          size_limit=cdk8s.Size.gibibytes(SHM_GIB))
        container = self.job.add_container(
            name="compile",
            image=spec.image,
            command=["sd21-compile"],
            working_dir=SCRATCH_DIR,
            env_variables={
                name: kplus.EnvValue.from_value(value)
                for name, value in {
                    **spec.model_env(),
                    "SD21_MODEL_ID": settings.model_id,
                    "SD21_MODEL_REVISION": settings.model_revision,
                    "SD21_WEIGHTS_SOURCE": spec.weights_source,
                    "SD21_NEURON_SDK": settings.neuron_sdk,
                    "SD21_WORKDIR": SCRATCH_DIR,
                    "HF_HOME": f"{SCRATCH_DIR}/hf",
                    "HOME": SCRATCH_DIR,
                    "TMPDIR": "/tmp",
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
        # Tracing runs on the CPU (torch_neuronx.trace cpu_backend=True with --target=inf2,
        # sd21/backends.py): the Job asks for no Neuron device, so it never waits for or holds one.
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
