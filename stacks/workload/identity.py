"""IAM roles of the workload, bound by EKS Pod Identity to the ServiceAccounts
that the workload chart really creates (same namespace, same name)."""
from aws_cdk import aws_eks_v2 as eks, aws_iam as iam, aws_s3 as s3
from constructs import Construct
import cdk8s_plus_27 as kplus

from stacks.settings import Settings

MODELS_PREFIX = "models/"


def pod_identity_role(scope: Construct, id: str, description: str) -> iam.Role:
    role = iam.Role(scope, id, assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com"), description=description)
    role.assume_role_policy.add_statements(iam.PolicyStatement(
        actions=["sts:TagSession"], principals=[iam.ServicePrincipal("pods.eks.amazonaws.com")]))
    return role


def bind(scope: Construct, id: str, *, cluster: eks.ICluster, account: kplus.ServiceAccount,
         role: iam.IRole) -> eks.CfnPodIdentityAssociation:
    return eks.CfnPodIdentityAssociation(
        scope, id,
        cluster_name=cluster.cluster_name,
        namespace=account.metadata.namespace,
        service_account=account.name,
        role_arn=role.role_arn,
    )


def compile_statements(settings: Settings, bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """Read the weights source; write only under models/ (never delete a finished artifact)."""
    statements = [
        iam.PolicyStatement(sid="ListModels", actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                            conditions={"StringLike": {"s3:prefix": [f"{MODELS_PREFIX}*"]}}),
        iam.PolicyStatement(sid="WriteModels", actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                            resources=[bucket.arn_for_objects(f"{MODELS_PREFIX}*")]),
        # Only the temporary upload keys may be deleted, after they are copied to the final name.
        iam.PolicyStatement(sid="CleanUploads", actions=["s3:DeleteObject"],
                            resources=[bucket.arn_for_objects(f"{MODELS_PREFIX}{settings.model_name}/.uploads/*")]),
    ]
    if settings.weights_source.startswith("s3://"):
        source_bucket, _, prefix = settings.weights_source[len("s3://"):].partition("/")
        prefix = prefix.rstrip("/")
        objects = f"{prefix}/*" if prefix else "*"
        statements += [
            iam.PolicyStatement(sid="ListWeights", actions=["s3:ListBucket"],
                                resources=[f"arn:aws:s3:::{source_bucket}"],
                                conditions={"StringLike": {"s3:prefix": [objects]}}),
            iam.PolicyStatement(sid="ReadWeights", actions=["s3:GetObject"],
                                resources=[f"arn:aws:s3:::{source_bucket}/{objects}"]),
        ]
    return statements


def serve_statements(settings: Settings, bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """Read (and list) this model's artifacts only."""
    prefix = f"{MODELS_PREFIX}{settings.model_name}/"
    return [
        iam.PolicyStatement(sid="ListModel", actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}}),
        iam.PolicyStatement(sid="ReadModel", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}*")]),
    ]
