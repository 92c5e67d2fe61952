"""Charts that make Neuron devices schedulable: device plugin, scheduler extension, my-scheduler."""
