"""The EKS cluster unit: the control plane, system nodes, add-ons, kubectl layers and how charts attach."""
