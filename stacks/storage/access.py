"""Who may touch the model bucket: the compile role (weights in, artifacts out)
and the serve role (read its model). Both are assumed through EKS Pod Identity;
the workload stack binds them to the ServiceAccounts its chart creates. They live
beside the bucket so that their policies name it without a cross-stack import."""
from aws_cdk import Aws, aws_iam as iam, aws_s3 as s3
from constructs import Construct

from sd21.contract import JOBS_PREFIX

from stacks.compliance import acknowledge_all, wildcard_findings
from stacks.pod_identity import pod_identity_role

MODELS_PREFIX = "models/"


class ModelAccessRoles(Construct):
    def __init__(self, scope: Construct, id: str, *, bucket: s3.IBucket, model_name: str, weights_source: str,
                 with_gateway: bool) -> None:
        super().__init__(scope, id)
        self.compile_role = pod_identity_role(self, "CompileRole", "sd21 compile Job: weights in, artifacts out")
        self.serve_role = pod_identity_role(self, "ServeRole", "sd21 inference pods: read their model, do jobs")
        grants = [(self.compile_role, compile_statements(bucket, model_name=model_name,
                                                         weights_source=weights_source)),
                  (self.serve_role, serve_statements(bucket, model_name=model_name)
                   + job_statements(bucket, "enqueue") + job_statements(bucket, "work"))]
        # At scale to zero the gateway accepts jobs (and publishes its counters, stacks/observability).
        self.gateway_role = None
        if with_gateway:
            self.gateway_role = pod_identity_role(self, "GatewayRole", "sd21 gateway: enqueue jobs, publish counters")
            grants.append((self.gateway_role, job_statements(bucket, "enqueue")))
        for role, statements in grants:
            for statement in statements:
                role.add_to_policy(statement)
            acknowledge_all(role, wildcard_findings(role, statements),
                            "Object keys under the model prefix are created per artifact version, and under "
                            "jobs/ per job id; the wildcards are limited to those prefixes (jobs: to the file "
                            "names each side writes; ListBucket to the same s3:prefix).")


def compile_statements(bucket: s3.IBucket, *, model_name: str, weights_source: str) -> list[iam.PolicyStatement]:
    """Read the weights source; write only under models/ (never delete a finished artifact)."""
    statements = [
        iam.PolicyStatement(sid="ListModels", actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                            conditions={"StringLike": {"s3:prefix": f"{MODELS_PREFIX}*"}}),
        iam.PolicyStatement(sid="WriteModels", actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                            resources=[bucket.arn_for_objects(f"{MODELS_PREFIX}*")]),
        # Only the temporary upload keys may be deleted, after they are copied to the final name.
        iam.PolicyStatement(sid="CleanUploads", actions=["s3:DeleteObject"],
                            resources=[bucket.arn_for_objects(f"{MODELS_PREFIX}{model_name}/.uploads/*")]),
    ]
    if weights_source.startswith("s3://"):
        source_bucket, _, prefix = weights_source[len("s3://"):].partition("/")
        prefix = prefix.rstrip("/")
        objects = f"{prefix}/*" if prefix else "*"
        statements += [
            iam.PolicyStatement(sid="ListWeights", actions=["s3:ListBucket"],
                                resources=[f"arn:{Aws.PARTITION}:s3:::{source_bucket}"],
                                conditions={"StringLike": {"s3:prefix": objects}}),
            iam.PolicyStatement(sid="ReadWeights", actions=["s3:GetObject"],
                                resources=[f"arn:{Aws.PARTITION}:s3:::{source_bucket}/{objects}"]),
        ]
    return statements


def job_statements(bucket: s3.IBucket, side: str) -> list[iam.PolicyStatement]:
    """Objects under jobs/ (sd21.jobs): who enqueues writes requests and reads status and
    results (to presign their URLs); who works reads requests and writes status and results."""
    def objects(pattern: str) -> str:
        return bucket.arn_for_objects(f"{JOBS_PREFIX}{pattern}")

    if side == "enqueue":
        return [iam.PolicyStatement(sid="WriteJobRequests", actions=["s3:PutObject"], resources=[objects("*/request.json")]),
                iam.PolicyStatement(sid="ReadJobs", actions=["s3:GetObject"], resources=[objects("*")])]
    return [iam.PolicyStatement(sid="WriteJobResults", actions=["s3:PutObject"],
                                resources=[objects("*/status.json"), objects("*/image.png")])]


def serve_statements(bucket: s3.IBucket, *, model_name: str) -> list[iam.PolicyStatement]:
    """Read (and list) this model's artifacts only."""
    prefix = f"{MODELS_PREFIX}{model_name}/"
    return [
        iam.PolicyStatement(sid="ListModel", actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                            conditions={"StringLike": {"s3:prefix": f"{prefix}*"}}),
        iam.PolicyStatement(sid="ReadModel", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}*")]),
    ]
