"""Karpenter v1 objects (EC2NodeClass, NodePool) built from the classes generated from the pinned CRDs."""
