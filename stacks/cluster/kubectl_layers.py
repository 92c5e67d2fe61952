"""The kubectl Lambda layer matching each supported Kubernetes version.

Each layer is a pinned package in requirements.txt; the kubectl in it must be
within one minor of the API server, so the version picks the layer.
"""
from importlib import import_module

from aws_cdk import aws_lambda as lambda_
from constructs import Construct


def kubectl_layer(scope: Construct, kubernetes_version: str) -> lambda_.ILayerVersion:
    minor = kubernetes_version.split(".")[1]
    module = import_module(f"aws_cdk.lambda_layer_kubectl_v{minor}")
    layer_class = getattr(module, f"KubectlV{minor}Layer")
    return layer_class(scope, "KubectlLayer")
