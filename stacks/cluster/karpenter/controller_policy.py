"""Karpenter controller permissions, equal in scope to the getting-started
CloudFormation policies of the pinned Karpenter version: node lifecycle scoped by
cluster and nodepool tags, IAM integration limited to the node role, describe of
this cluster only, the interruption queue, and read-only resource discovery."""
from aws_cdk import Aws, aws_iam as iam

ARN = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}"


def _ec2(*resources: str) -> list[str]:
    return [f"{ARN}:*:{r}/*" for r in resources]


def node_lifecycle(cluster_name: str) -> list[iam.PolicyStatement]:
    owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned",
             "aws:RequestTag/eks:eks-cluster-name": cluster_name}
    resource_owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    return [
        iam.PolicyStatement(
            sid="AllowScopedEC2InstanceAccessActions",
            actions=["ec2:RunInstances", "ec2:CreateFleet"],
            resources=[f"{ARN}::image/*", f"{ARN}::snapshot/*",
                       *_ec2("security-group", "subnet", "capacity-reservation", "placement-group")],
        ),
        iam.PolicyStatement(
            sid="AllowScopedEC2LaunchTemplateAccessActions",
            actions=["ec2:RunInstances", "ec2:CreateFleet"],
            resources=_ec2("launch-template"),
            conditions={"StringEquals": resource_owned,
                        "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}},
        ),
        iam.PolicyStatement(
            sid="AllowScopedEC2InstanceActionsWithTags",
            actions=["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
            resources=_ec2("fleet", "instance", "volume", "network-interface", "launch-template",
                           "spot-instances-request", "capacity-reservation"),
            conditions={"StringEquals": owned,
                        "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}},
        ),
        iam.PolicyStatement(
            sid="AllowScopedResourceCreationTagging",
            actions=["ec2:CreateTags"],
            resources=_ec2("fleet", "instance", "volume", "network-interface", "launch-template",
                           "spot-instances-request"),
            conditions={"StringEquals": {**owned, "ec2:CreateAction": ["RunInstances", "CreateFleet",
                                                                      "CreateLaunchTemplate"]},
                        "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}},
        ),
        iam.PolicyStatement(
            sid="AllowScopedResourceTagging",
            actions=["ec2:CreateTags"],
            resources=_ec2("instance"),
            conditions={"StringEquals": resource_owned,
                        "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                        "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                        "ForAllValues:StringEquals": {"aws:TagKeys": ["eks:eks-cluster-name",
                                                                      "karpenter.sh/nodeclaim", "Name"]}},
        ),
        iam.PolicyStatement(
            sid="AllowScopedDeletion",
            actions=["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            resources=_ec2("instance", "launch-template"),
            conditions={"StringEquals": resource_owned,
                        "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}},
        ),
    ]


def iam_integration(cluster_name: str, node_role: iam.IRole) -> list[iam.PolicyStatement]:
    profile_tags = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned",
                    "aws:ResourceTag/eks:eks-cluster-name": cluster_name,
                    "aws:ResourceTag/topology.kubernetes.io/region": Aws.REGION}
    request_tags = {k.replace("ResourceTag", "RequestTag"): v for k, v in profile_tags.items()}
    profiles = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:instance-profile/*"
    return [
        iam.PolicyStatement(
            sid="AllowPassingInstanceRole",
            actions=["iam:PassRole"],
            resources=[node_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        ),
        iam.PolicyStatement(
            sid="AllowScopedInstanceProfileCreationActions",
            actions=["iam:CreateInstanceProfile"],
            resources=[profiles],
            conditions={"StringEquals": request_tags,
                        "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}},
        ),
        iam.PolicyStatement(
            sid="AllowScopedInstanceProfileTagActions",
            actions=["iam:TagInstanceProfile"],
            resources=[profiles],
            conditions={"StringEquals": {**profile_tags, **request_tags},
                        "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                                       "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}},
        ),
        iam.PolicyStatement(
            sid="AllowScopedInstanceProfileActions",
            actions=["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
                     "iam:DeleteInstanceProfile"],
            resources=[profiles],
            conditions={"StringEquals": profile_tags,
                        "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}},
        ),
        iam.PolicyStatement(
            sid="AllowInstanceProfileReadActions",
            actions=["iam:GetInstanceProfile"],
            resources=[profiles],
        ),
        # Alone on "*" as in the 1.14 getting-started policy (statement
        # AllowUnscopedInstanceProfileListAction, aws/karpenter-provider-aws #8520): the List
        # API takes no instance-profile ARN, and without it deleting or replacing an
        # EC2NodeClass never completes.
        iam.PolicyStatement(
            sid="AllowUnscopedInstanceProfileListAction",
            actions=["iam:ListInstanceProfiles"],
            resources=["*"],
        ),
    ]


def eks_integration(cluster_arn: str) -> list[iam.PolicyStatement]:
    return [iam.PolicyStatement(sid="AllowAPIServerEndpointDiscovery",
                                actions=["eks:DescribeCluster"], resources=[cluster_arn])]


def interruption(queue_arn: str) -> list[iam.PolicyStatement]:
    return [iam.PolicyStatement(
        sid="AllowInterruptionQueueActions",
        actions=["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
        resources=[queue_arn],
    )]


def resource_discovery() -> list[iam.PolicyStatement]:
    return [
        iam.PolicyStatement(
            sid="AllowRegionalReadActions",
            actions=["ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances",
                     "ec2:DescribeInstanceStatus",
                     "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
                     "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups",
                     "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"],
            # EC2 Describe* calls support no resource-level scoping; the region condition bounds them.
            resources=["*"],
            conditions={"StringEquals": {"aws:RequestedRegion": Aws.REGION}},
        ),
        iam.PolicyStatement(
            sid="AllowSSMReadActions",
            actions=["ssm:GetParameter"],
            resources=[f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}::parameter/aws/service/*"],
        ),
        iam.PolicyStatement(sid="AllowPricingReadActions", actions=["pricing:GetProducts"], resources=["*"]),
    ]
