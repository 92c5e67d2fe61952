"""Autoscaling of the inference Deployment: Prometheus and KEDA, and the ScaledObject chart."""
