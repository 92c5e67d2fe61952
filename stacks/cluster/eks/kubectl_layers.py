"""The kubectl provider's parts: the Lambda layer matching each supported Kubernetes
version, and the cdk-nag acknowledgments of what aws-cdk-lib builds around it.

Each layer is a pinned package in requirements.txt; the kubectl in it must be
within one minor of the API server, so the version picks the layer.
"""
from importlib import import_module

from aws_cdk import Stack, aws_lambda as lambda_
from constructs import Construct

from stacks.compliance import acknowledge_all, managed_policy


def kubectl_layer(scope: Construct, kubernetes_version: str) -> lambda_.ILayerVersion:
    minor = kubernetes_version.split(".")[1]
    module = import_module(f"aws_cdk.lambda_layer_kubectl_v{minor}")
    layer_class = getattr(module, f"KubectlV{minor}Layer")
    return layer_class(scope, "KubectlLayer")


def acknowledge_kubectl_provider(provider: Construct) -> None:
    """The findings on an aws-cdk-lib kubectl provider (Lambda + custom-resource framework)."""
    handler = provider.node.find_child("Handler")
    logical_id = Stack.of(provider).get_logical_id
    handler_id = logical_id(handler.node.default_child)
    ecr_public_condition = logical_id(handler.node.find_child("HasEcrPublic"))
    ecr_public_policy = (
        '{"Fn::If":["%s",{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},'
        '":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly"]]},{"Ref":"AWS::NoValue"}]}'
        % ecr_public_condition
    )
    acknowledge_all(
        provider,
        [managed_policy("service-role/AWSLambdaBasicExecutionRole"),
         managed_policy("service-role/AWSLambdaVPCAccessExecutionRole"),
         managed_policy("AmazonEC2ContainerRegistryReadOnly"),
         f"AwsSolutions-IAM4[Policy::{ecr_public_policy}]",
         f"AwsSolutions-IAM5[Resource::<{handler_id}.Arn>:*]",
         "AwsSolutions-L1"],
        "aws-cdk-lib's kubectl provider (Lambda + custom-resource framework): its role, managed "
        "Lambda policies, permission to invoke its handler's versions and runtime are set by "
        "aws-cdk-lib, which we pin and upgrade; it only reaches this cluster's API.",
    )
