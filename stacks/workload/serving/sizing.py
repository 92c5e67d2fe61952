"""What each workload pod asks for (no imports: the settings check them against the NodePool).

Compile: neuronx-cc on the SD2.1 UNet needs well over 16 GiB (known to fail there); these
requests fit inf2.8xlarge (32 vCPU, 128 GiB), the cheapest inf2 size with room.
Serve: one Inferentia2 device (two NeuronCores: the UNet runs data-parallel over both);
inf2.xlarge has exactly one device, 4 vCPU and 16 GiB, and the requests leave room for
the kubelet and the node's DaemonSets.
"""
COMPILE_CPU = 16
COMPILE_MEMORY_GIB = 64

NEURON_DEVICES = 1
SERVE_CPU_MILLI = 3000
SERVE_MEMORY_GIB = 12

# The scale-to-zero gateway's pods (stacks/workload/serving/gateway.py): each holds up to
# coldStartHoldRequests on its own, so the settings check the sum against the endpoint.
GATEWAY_REPLICAS = 2
