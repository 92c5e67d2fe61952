"""The only torch-neuronx calls (sd21/backends.py), checked against the references with a
recording stand-in for torch_neuronx: the real compile path runs, only the module differs.

The choices asserted here: tracing needs no Neuron device (cpu_backend=True with
--target=inf2 and NEURON_PLATFORM_TARGET_OVERRIDE set before the import, as
optimum-neuron's trace_neuronx and its PR #961 do), NEURON_FUSE_SOFTMAX=1 (sd2_512_compile.py),
the VAE decoder traced in float32 and only the UNet lazy-loaded (the SD2.1-512 sample).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types

import pytest


class RecordingTorchNeuronx(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports as `torch_neuronx`, recording the environment at import time and every call."""

    def __init__(self):
        self.env_at_import: dict[str, str] | None = None
        self.traces: list[dict] = []
        self.async_loaded: list[str] = []
        self.lazy_loaded: list[str] = []

    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name == "torch_neuronx" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        import torch

        recorder = self
        self.env_at_import = dict(os.environ)

        def trace(func, example_inputs, *, compiler_workdir=None, compiler_args=None, cpu_backend=False):
            traced = torch.jit.trace(func, example_inputs, check_trace=False)
            recorder.traces.append({"module": type(func).__name__, "args": list(compiler_args or []),
                                    "cpu_backend": cpu_backend, "workdir": compiler_workdir,
                                    "dtypes": [t.dtype for t in example_inputs], "traced": traced})
            return traced

        def part_of(traced) -> str:
            return next(t["module"] for t in recorder.traces if t["traced"] is traced)

        module.trace = trace
        module.async_load = lambda traced: recorder.async_loaded.append(part_of(traced))
        module.lazy_load = lambda traced: recorder.lazy_loaded.append(part_of(traced))


@pytest.fixture()
def torch_neuronx(monkeypatch):
    recorder = RecordingTorchNeuronx()
    for name in ("NEURON_FUSE_SOFTMAX", "NEURON_PLATFORM_TARGET_OVERRIDE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "torch_neuronx", raising=False)
    sys.meta_path.insert(0, recorder)
    yield recorder
    sys.meta_path.remove(recorder)
    sys.modules.pop("torch_neuronx", None)


def test_neuron_compile_traces_every_part_on_the_cpu_backend(torch_neuronx, tiny_weights, tmp_path):
    import torch
    from sd21.artifact import CompileInputs
    from sd21.compile import build_artifact

    inputs = CompileInputs.defaults("neuron")
    build_artifact(inputs, str(tiny_weights), {}, tmp_path / "artifact")

    assert torch_neuronx.env_at_import["NEURON_FUSE_SOFTMAX"] == "1"
    assert torch_neuronx.env_at_import["NEURON_PLATFORM_TARGET_OVERRIDE"] == "inf2"
    by_part = {t["module"]: t for t in torch_neuronx.traces}
    assert set(by_part) == {"TextEncoderWrapper", "UNetWrapper", "VaeDecoderWrapper", "Conv2d"}
    for trace in torch_neuronx.traces:
        assert trace["cpu_backend"] is True and "--target=inf2" in trace["args"], trace
        assert "--enable-fast-loading-neuron-binaries" in trace["args"]
    assert "--model-type=unet-inference" in by_part["UNetWrapper"]["args"]
    # UNet in bf16 (its timestep stays float32), the VAE decoder in float32.
    assert by_part["UNetWrapper"]["dtypes"] == [torch.bfloat16, torch.float32, torch.bfloat16]
    assert by_part["VaeDecoderWrapper"]["dtypes"] == [torch.float32]
    assert sorted(torch_neuronx.async_loaded) == sorted(by_part)
    assert torch_neuronx.lazy_loaded == ["UNetWrapper"]
    assert sorted(p.name for p in (tmp_path / "artifact" / "traced").iterdir()) == [
        "text_encoder.pt", "unet.pt", "vae_decoder.pt", "vae_post_quant_conv.pt"]


def test_every_compile_choice_is_in_the_version():
    from sd21.artifact import CompileInputs, artifact_version

    base = CompileInputs.defaults("neuron")
    variants = [
        CompileInputs.defaults("neuron", compiler_env=(("NEURON_FUSE_SOFTMAX", "0"),)),
        CompileInputs.defaults("neuron", vae_decoder_dtype="bfloat16"),
        CompileInputs.defaults("neuron", lazy_load_parts=()),
    ]
    assert len({artifact_version(v) for v in [base, *variants]}) == 1 + len(variants)
    assert base.part_dtype("vae_decoder") == "float32" and base.part_dtype("unet") == "bfloat16"
