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


@dataclass(frozen=True)
class InstanceSize:
    name: str
    vcpu: int
    memory_gib: int
    devices: int  # Inferentia2 chips, 2 NeuronCores each


# The inf2 sizes (Amazon EC2 Inf2 instance specifications), smallest first.
INF2_SIZES = (
    InstanceSize("inf2.xlarge", 4, 16, 1),
    InstanceSize("inf2.8xlarge", 32, 128, 1),
    InstanceSize("inf2.24xlarge", 96, 384, 6),
    InstanceSize("inf2.48xlarge", 192, 768, 12),
)


def smallest_inf2_for(cpu: float, memory_gib: float, devices: int = 0) -> InstanceSize:
    """The size Karpenter launches for one pod of that request (it needs headroom for the
    node's own reservations, so "fits" means strictly more CPU and memory)."""
    for size in INF2_SIZES:
        if size.vcpu > cpu and size.memory_gib > memory_gib and size.devices >= devices:
            return size
    raise ValueError(f"no inf2 size fits {cpu} vCPU, {memory_gib} GiB and {devices} devices")
