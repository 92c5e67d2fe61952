"""Is this node's accelerator usable? Stdlib only, so the stage initContainer can ask
before it downloads gigabytes (sd21.backends adds the torch-side checks).

neuron: the driver is loaded (a `neuron` line in /proc/devices, which every container
sees) and the device plugin gave this container device nodes it can open (/dev/neuron*;
the Neuron container docs: "No neuron device available" means none was exposed). The
runtime itself initialises when the server loads the first traced part.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path


class DeviceUnavailable(Exception):
    """The accelerator this process must use is absent or unusable (one-line reason)."""


def check_neuron_driver(proc_devices: Path = Path("/proc/devices")) -> None:
    try:
        drivers = proc_devices.read_text()
    except OSError:
        drivers = ""
    if not any(line.split()[-1:] == ["neuron"] for line in drivers.splitlines()):
        raise DeviceUnavailable("the Neuron driver is not loaded on this node (no 'neuron' in /proc/devices): "
                                "its AMI lacks the aws-neuronx-dkms driver")


def check_neuron_devices() -> str:
    nodes = sorted(glob.glob("/dev/neuron[0-9]*"))
    if not nodes:
        raise DeviceUnavailable("no Neuron device in this container (/dev/neuron* missing): the pod must request "
                                "aws.amazon.com/neuron and the node's Neuron device plugin must be running")
    for node in nodes:
        if not os.access(node, os.R_OK | os.W_OK):
            raise DeviceUnavailable(f"{node} is not readable and writable by uid {os.getuid()}: the runtime "
                                    "cannot open the device (check the device plugin and the container's user)")
    return ", ".join(nodes)
