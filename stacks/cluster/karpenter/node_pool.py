"""NodePool "inf2": which Neuron nodes Karpenter may launch, how many, and when it removes them.

Karpenter picks the cheapest inf2 size that fits the pending pods (one device,
two NeuronCores, fits inf2.xlarge). Nodes carry the Neuron taint, so only pods
that tolerate it (Neuron workloads, the device plugin) run there.
"""
from __future__ import annotations

import cdk8s
from constructs import Construct

from k8s_charts.imports.aws.k8s.karpenter import Ec2NodeClass
from k8s_charts.imports.sh.karpenter import (
    NodePool,
    NodePoolSpec,
    NodePoolSpecDisruption,
    NodePoolSpecDisruptionBudgets,
    NodePoolSpecDisruptionBudgetsReasons,
    NodePoolSpecDisruptionConsolidationPolicy,
    NodePoolSpecLimits,
    NodePoolSpecTemplate,
    NodePoolSpecTemplateSpec,
    NodePoolSpecTemplateSpecNodeClassRef,
    NodePoolSpecTemplateSpecRequirements,
    NodePoolSpecTemplateSpecRequirementsOperator,
    NodePoolSpecTemplateSpecTaints,
    NodePoolSpecTemplateSpecTaintsEffect,
)
from stacks.cluster.neuron.hardware import INF2_FAMILY, NEURON_DEVICE, NEURON_TAINT

# Karpenter labels its nodes karpenter.sh/nodepool=<this>; workloads select it.
NODE_POOL_NAME = "inf2"
__all__ = ["NodePoolChart", "NODE_POOL_NAME", "NEURON_TAINT"]  # the taint its nodes carry
_EFFECTS = {
    "NoSchedule": NodePoolSpecTemplateSpecTaintsEffect.NO_SCHEDULE,
    "PreferNoSchedule": NodePoolSpecTemplateSpecTaintsEffect.PREFER_NO_SCHEDULE,
    "NoExecute": NodePoolSpecTemplateSpecTaintsEffect.NO_EXECUTE,
}


def _in(key: str, *values: str) -> NodePoolSpecTemplateSpecRequirements:
    return NodePoolSpecTemplateSpecRequirements(
        key=key, operator=NodePoolSpecTemplateSpecRequirementsOperator.IN, values=list(values)
    )


class NodePoolChart(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str, *, node_class: Ec2NodeClass, capacity_types: tuple[str, ...],
                 cpu_limit: int, memory_gib_limit: int, neuron_limit: int, consolidate_after: str,
                 disruption_budget: str, expire_after: str) -> None:
        super().__init__(scope, id)
        self.node_pool = NodePool(
            self,
            "NodePool",
            metadata=cdk8s.ApiObjectMetadata(name=NODE_POOL_NAME),
            spec=NodePoolSpec(
                template=NodePoolSpecTemplate(spec=NodePoolSpecTemplateSpec(
                    node_class_ref=NodePoolSpecTemplateSpecNodeClassRef(
                        group=node_class.api_group, kind=node_class.kind, name=node_class.name,
                    ),
                    requirements=[
                        _in("karpenter.k8s.aws/instance-family", INF2_FAMILY),
                        _in("kubernetes.io/arch", "amd64"),
                        _in("kubernetes.io/os", "linux"),
                        _in("karpenter.sh/capacity-type", *capacity_types),
                    ],
                    taints=[NodePoolSpecTemplateSpecTaints(
                        key=NEURON_TAINT.key, value=NEURON_TAINT.value, effect=_EFFECTS[NEURON_TAINT.effect],
                    )],
                    # Replace nodes regularly (fresh AMI, no long-lived drift).
                    expire_after=expire_after,
                )),
                # A ceiling on spend if something keeps creating Neuron pods.
                limits={
                    "cpu": NodePoolSpecLimits.from_string(str(cpu_limit)),
                    "memory": NodePoolSpecLimits.from_string(f"{memory_gib_limit}Gi"),
                    NEURON_DEVICE: NodePoolSpecLimits.from_string(str(neuron_limit)),
                },
                disruption=NodePoolSpecDisruption(
                    consolidation_policy=NodePoolSpecDisruptionConsolidationPolicy.WHEN_EMPTY_OR_UNDERUTILIZED,
                    consolidate_after=consolidate_after,
                    # At most this share of nodes is disrupted at once (voluntary disruptions),
                    # and a new AMI rolls one node at a time; the inference PDB keeps the
                    # only ready replica from being evicted for it.
                    budgets=[NodePoolSpecDisruptionBudgets(nodes=disruption_budget),
                             NodePoolSpecDisruptionBudgets(
                                 nodes="1", reasons=[NodePoolSpecDisruptionBudgetsReasons.DRIFTED])],
                ),
            ),
        )
