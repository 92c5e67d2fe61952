"""Node health (EKS node monitoring agent + Karpenter node repair) and Container Insights with Neuron metrics."""
