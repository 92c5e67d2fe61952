from aws_cdk import Stack, aws_ecr as ecr, aws_eks_v2 as eks, aws_s3 as s3
from constructs import Construct

from stacks.compliance import acknowledge_all, wildcard_findings
from stacks.settings import Settings
from stacks.workload.autoscaling import PendingRequestsMetric
from stacks.workload.identity import bind, compile_statements, pod_identity_role, serve_statements
from stacks.workload.manifests import WorkloadManifests


class WorkloadStack(Stack):
    """The SD2.1 workload: compile Job, inference Deployment/Service/Ingress,
    autoscaling, and the IAM roles its pods get through Pod Identity."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, cluster: eks.ICluster,
                 repository: ecr.IRepository, bucket: s3.IBucket, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.manifests = WorkloadManifests(self, "Manifests", settings=settings, cluster=cluster,
                                           repository=repository, bucket=bucket)
        identities = self.manifests.identities

        self.compile_role = pod_identity_role(self, "CompileRole", "sd21 compile Job: weights in, artifacts out")
        self.serve_role = pod_identity_role(self, "ServeRole", "sd21 inference pods: read their model")
        for role, statements in ((self.compile_role, compile_statements(settings, bucket)),
                                 (self.serve_role, serve_statements(settings, bucket))):
            for statement in statements:
                role.add_to_policy(statement)
            acknowledge_all(role, wildcard_findings(statements),
                            "Object keys under the model prefix are created per artifact version; the "
                            "wildcard is limited to that prefix (and ListBucket to the same s3:prefix).")
        self.compile_binding = bind(self, "CompileIdentity", cluster=cluster,
                                    account=identities.compile_account, role=self.compile_role)
        self.serve_binding = bind(self, "ServeIdentity", cluster=cluster,
                                  account=identities.serve_account, role=self.serve_role)
        self.autoscaling = PendingRequestsMetric(self, "Autoscaling", settings=settings, cluster=cluster)
