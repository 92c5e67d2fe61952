"""The workload's namespace and its two ServiceAccounts (compile, serve), each
bound to its own IAM role by an EKS Pod Identity association in the CDK stack.
No ClusterRole: the pods need no Kubernetes API access at all."""
import cdk8s
import cdk8s_plus_27 as kplus
from constructs import Construct

from stacks.workload.serving.spec import NAMESPACE


class WorkloadIdentities(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.workload_namespace = kplus.Namespace(self, "Namespace", metadata=cdk8s.ApiObjectMetadata(
            name=NAMESPACE,
            # The load balancer controller adds a readiness gate to pods here, so a rollout
            # only removes an old pod once its replacement is healthy in the ALB.
            labels={"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}))
        self.compile_account = self._account("compile", "sd21-compile")
        self.serve_account = self._account("serve", "sd21-serve")

    def _account(self, id: str, name: str) -> kplus.ServiceAccount:
        return kplus.ServiceAccount(
            self,
            id,
            metadata=cdk8s.ApiObjectMetadata(name=name, namespace=self.workload_namespace.name),
            # Credentials come from Pod Identity, not from a Kubernetes token.
            automount_token=False,
        )
