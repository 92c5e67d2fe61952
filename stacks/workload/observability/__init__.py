"""Seeing and repairing: node health (EKS node monitoring agent + Karpenter node repair),
Container Insights with Neuron metrics, and the dashboard and alarms operators watch."""
