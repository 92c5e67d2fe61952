"""Where workload pods run: on the Karpenter inf2 NodePool, tolerating its taint."""
import cdk8s_plus_27 as kplus

from k8s_charts.common import tolerate
from stacks.cluster.karpenter.node_pool import NEURON_TAINT, NODE_POOL_NAME


def run_on_inf2_pool(workload: kplus.Workload) -> None:
    tolerate(workload.scheduling, NEURON_TAINT)
    workload.scheduling.attract(kplus.Node.labeled(kplus.NodeLabelQuery.is_("karpenter.sh/nodepool", NODE_POOL_NAME)))
