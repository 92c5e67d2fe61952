"""The one place that knows about devices: trace and load the model parts.

`torch_neuronx` is imported lazily and only for the neuron backend, so the
same code path runs (and is tested) on cpu, where "compile" is torch.jit.trace
of the very same wrappers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .devices import DeviceUnavailable, check_neuron_devices, check_neuron_driver

TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class TextEncoderWrapper(torch.nn.Module):
    """input_ids (1x77 int64) -> last hidden state (1x77xD)."""

    def __init__(self, text_encoder: torch.nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, return_dict=False)[0]


class UNetWrapper(torch.nn.Module):
    """(latent, timestep, context) -> noise prediction, tuple-free for tracing."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, context, return_dict=False)[0]


class VaeDecoderWrapper(torch.nn.Module):
    def __init__(self, decoder: torch.nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)


def part_wrappers(pipe, inputs) -> dict[str, torch.nn.Module]:
    """The four traced parts of the Neuron SD2.1 sample, eval mode, each in its dtype
    (inputs.part_dtype: the UNet low precision, the VAE decoder and the rest float32)."""
    parts = {
        "text_encoder": TextEncoderWrapper(pipe.text_encoder),
        "unet": UNetWrapper(pipe.unet),
        "vae_decoder": VaeDecoderWrapper(pipe.vae.decoder),
        "vae_post_quant_conv": pipe.vae.post_quant_conv,
    }
    return {name: module.to(TORCH_DTYPES[inputs.part_dtype(name)]).eval() for name, module in parts.items()}


def example_inputs(part: str, inputs) -> tuple:
    """Batch-1 example tensors: the CFG batch of 2 is split at serve time."""
    dtype = TORCH_DTYPES[inputs.part_dtype(part)]
    latent_shape, context_shape = tuple(inputs.latent_shape), tuple(inputs.context_shape)
    if part == "text_encoder":
        return (torch.zeros((1, context_shape[1]), dtype=torch.int64),)
    if part == "unet":
        return (
            torch.randn(latent_shape, dtype=dtype),
            # The timestep stays float32: bf16 would round 999 to 1000 and step large timesteps by 4.
            torch.tensor([999.0], dtype=torch.float32),
            torch.randn(context_shape, dtype=dtype),
        )
    if part in ("vae_decoder", "vae_post_quant_conv"):
        return (torch.randn(latent_shape, dtype=dtype),)
    raise ValueError(f"unknown model part {part!r}")


def trace_for_backend(backend: str, part: str, module: torch.nn.Module, example: tuple, inputs,
                      workdir: Path) -> torch.jit.ScriptModule:
    """Compile one part for the backend; the result is saved with torch.jit.save."""
    with torch.no_grad():
        if backend == "neuron":
            return _trace_neuron(part, module, example, inputs, workdir)
        if backend == "cuda":
            module = module.cuda()
            example = tuple(t.cuda() for t in example)
        return torch.jit.trace(module, example, check_trace=False)


def _trace_neuron(part: str, module: torch.nn.Module, example: tuple, inputs, workdir: Path):
    """torch_neuronx.trace without holding a device (cpu_backend=True, --target in the
    compiler args), as optimum-neuron's trace_neuronx does; the load hints as in the
    SD2.1 sample: async_load for every part, lazy_load for the UNet only.

    The compiler environment (inputs.compiler_env) is not set here: torch-neuronx was
    initialised when diffusers imported torch_xla, long before this call. It comes from
    the pod spec, and sd21-compile refuses to start without it (compile.run)."""
    import torch_neuronx  # only present in the Neuron image

    traced = torch_neuronx.trace(module, example, compiler_workdir=str(workdir),
                                 compiler_args=list(inputs.compiler_args_for(part)), cpu_backend=True)
    torch_neuronx.async_load(traced)
    if part in inputs.lazy_load_parts:
        torch_neuronx.lazy_load(traced)
    return traced


class _SplitBatch(torch.nn.Module):
    """CPU/CUDA twin of torch_neuronx.DataParallel: run a batch-1 trace per sample."""

    def __init__(self, traced: torch.jit.ScriptModule):
        super().__init__()
        self.traced = traced

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        outputs = [self.traced(*(t[i : i + 1] for t in tensors)) for i in range(tensors[0].shape[0])]
        return torch.cat(outputs, dim=0)


def load_traced(backend: str, path: Path, part: str) -> Callable[..., torch.Tensor]:
    """Load a traced part; the UNet accepts the CFG batch of 2 on every backend."""
    if backend == "neuron":
        import torch_neuronx

        traced = torch.jit.load(str(path))
        if part == "unet":
            # One sample of the CFG pair on each of the device's two NeuronCores.
            return torch_neuronx.DataParallel(traced, [0, 1], set_dynamic_batching=False)
        # Plain torch.jit.load, as the SD2.1-512 references load every async-loaded part
        # but the UNet (aws-neuron-samples hf_pretrained_sd2_512_inference.ipynb and
        # aws-neuron-sdk src/benchmark/pytorch/sd2_512_benchmark.py: no move_trace_to_device).
        # move_trace_to_device is for traces whose weights are not in the NEFF: optimum-neuron
        # modeling_traced.py load_model calls it only "when inline_weights_to_neff=False,
        # otherwise it is loaded automatically to a Neuron device"; _trace_neuron keeps the
        # trace API's default inline_weights_to_neff=True (api-torch-neuronx-trace.rst).
        return traced
    traced = torch.jit.load(str(path), map_location="cuda" if backend == "cuda" else "cpu")
    traced.eval()
    return _SplitBatch(traced) if part == "unet" else traced


def check_device(backend: str) -> str:
    """Fail fast (DeviceUnavailable) when the node's accelerator is unusable; returns what was found."""
    if backend == "cuda":
        if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
            raise DeviceUnavailable("backend cuda but no usable GPU: torch.cuda.is_available() is False "
                                    "(is nvidia.com/gpu requested and the NVIDIA driver installed?)")
        return torch.cuda.get_device_name(0)
    if backend == "neuron":
        check_neuron_driver()
        return check_neuron_devices()
    return "cpu"


def device_for(backend: str) -> torch.device:
    return torch.device("cuda") if backend == "cuda" else torch.device("cpu")
