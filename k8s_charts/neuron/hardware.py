"""How Neuron hardware appears to Kubernetes: resource names, the node taint, instance types.

One place for these, so that the NodePool's taint, the device plugin's
tolerations and affinity, and the scheduler extender's managed resources
cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

# Extended resources the device plugin advertises. `aws.amazon.com/neurondevice`
# was removed in Neuron 2.22; do not add it back.
NEURON_DEVICE = "aws.amazon.com/neuron"
NEURON_CORE = "aws.amazon.com/neuroncore"
MANAGED_RESOURCES = (NEURON_DEVICE, NEURON_CORE)


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str  # Kubernetes spelling: NoSchedule, PreferNoSchedule, NoExecute
    value: str | None = None


# Neuron nodes carry this taint so that only pods that tolerate it (the device
# plugin, Neuron workloads) land on the expensive accelerator nodes.
NEURON_TAINT = Taint(key=NEURON_DEVICE, effect="NoSchedule")

# The instance family the inf2 NodePool launches.
INF2_FAMILY = "inf2"

# Every Neuron instance size (as in the Neuron Helm chart's `neuronInstances`),
# so the device plugin also serves any other Neuron pool added later.
NEURON_INSTANCE_TYPES = (
    "inf1.xlarge", "inf1.2xlarge", "inf1.6xlarge", "inf1.24xlarge",
    "inf2.xlarge", "inf2.8xlarge", "inf2.24xlarge", "inf2.48xlarge",
    "trn1.2xlarge", "trn1.32xlarge", "trn1n.32xlarge",
    "trn2.48xlarge", "trn2u.48xlarge",
)
