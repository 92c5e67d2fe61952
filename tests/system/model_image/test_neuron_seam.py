"""The only torch-neuronx calls (sd21/backends.py), checked against the references with
recording stand-ins for torch_xla and torch_neuronx: the real compile entrypoint runs, in a
fresh interpreter, only those two modules differ.

Why a fresh interpreter: diffusers decides at its own import whether torch_xla is installed
(diffusers utils/import_utils.py `_torch_xla_available = _is_package_available("torch_xla")`),
and then `from diffusers import StableDiffusionPipeline` imports it (models/attention_processor.py,
pipelines/stable_diffusion/pipeline_stable_diffusion.py). The real torch_xla initialises
torch-neuronx when imported (pytorch/xla torch_xla/__init__.py, _aws_ec2_inf_trn_init:
`from torch_neuronx import xla; xla.init()`) and defaults PJRT_DEVICE to NEURON when unset
(pytorch/xla PR #7952; torch_xla/runtime.py _maybe_select_default_device leaves a set one alone).
So the compiler environment counts at that import, long before anything is traced.

The choices asserted here: the environment at torch_xla's import is the one the artifact
version hashes, or no artifact is made (sd21-compile refuses, exit 2); tracing needs no Neuron
device (cpu_backend=True with `--target inf2`, PJRT_DEVICE=CPU); NEURON_FUSE_SOFTMAX=1
(sd2_512_compile.py); the VAE decoder traced in float32 and only the UNet lazy-loaded (the
SD2.1-512 sample); loading calls no move_trace_to_device (the SD2.1-512 references).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import json
import os
import subprocess
import sys
import traceback
import types
from pathlib import Path

import pytest

TORCH_XLA_VERSION = "2.9.0"  # the version issue 20 names; diffusers imports its flash attention past 2.2
WATCHED = ("NEURON_FUSE_SOFTMAX", "NEURON_PLATFORM_TARGET_OVERRIDE", "PJRT_DEVICE")


class _TorchXlaDistribution(importlib.metadata.Distribution):
    """What importlib.metadata (and so diffusers) finds for the stand-in torch_xla."""

    def read_text(self, filename):
        if filename == "METADATA":
            return f"Metadata-Version: 2.1\nName: torch_xla\nVersion: {TORCH_XLA_VERSION}\n"
        return None

    def locate_file(self, path):
        return Path(path)


def _no_op_attribute(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return lambda *args, **kwargs: None


class NeuronStandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports as `torch_xla` (any submodule) and `torch_neuronx`, recording the environment
    at each first import, who imported torch_xla, and every torch-neuronx call."""

    def __init__(self):
        self.imports: list[dict] = []
        self.traces: list[dict] = []
        self.async_loaded: list[str] = []
        self.lazy_loaded: list[str] = []
        self.moved_to_device: list[object] = []
        self.data_parallel: list[list[int]] = []

    @classmethod
    def install(cls) -> "NeuronStandIns":
        stand_ins = cls()
        sys.meta_path.insert(0, stand_ins)
        return stand_ins

    def uninstall(self) -> None:
        sys.meta_path.remove(self)
        for name in [n for n in sys.modules if n == "torch_neuronx" or n.split(".")[0] == "torch_xla"]:
            del sys.modules[name]

    def find_spec(self, name, path=None, target=None):
        if name == "torch_neuronx" or name.split(".")[0] == "torch_xla":
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        wanted = (context.name or "").replace("-", "_").lower()
        return iter([_TorchXlaDistribution()] if wanted == "torch_xla" else [])

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ == "torch_neuronx":
            self._record_import(module.__name__)
            self._fill_torch_neuronx(module)
            return
        if module.__name__ == "torch_xla":
            self._record_import(module.__name__)
            # What the real torch_xla does at import (see the module docstring).
            os.environ.setdefault("PJRT_DEVICE", "NEURON")
            import torch_neuronx  # noqa: F401
        # torch_xla and its submodules (core.xla_model, ...): any public attribute is a no-op callable.
        module.__version__ = TORCH_XLA_VERSION
        module.__getattr__ = _no_op_attribute

    def _record_import(self, name: str) -> None:
        frames = [f.filename for f in traceback.extract_stack()]
        outside = [f for f in frames if "importlib" not in f and f != __file__ and not f.startswith("<")]
        self.imports.append({"module": name, "env": {k: os.environ.get(k) for k in WATCHED},
                             "importer": outside[-1] if outside else None})

    def _fill_torch_neuronx(self, module: types.ModuleType) -> None:
        import torch

        def trace(func, example_inputs, *, compiler_workdir=None, compiler_args=None, cpu_backend=False):
            traced = torch.jit.trace(func, example_inputs, check_trace=False)
            self.traces.append({"module": type(func).__name__, "args": list(compiler_args or []),
                                "cpu_backend": cpu_backend, "pjrt_device": os.environ.get("PJRT_DEVICE"),
                                "dtypes": [str(t.dtype) for t in example_inputs], "traced": traced})
            return traced

        def part_of(traced) -> str:
            return next(t["module"] for t in self.traces if t["traced"] is traced)

        def data_parallel(traced, device_ids, set_dynamic_batching=True):
            self.data_parallel.append(list(device_ids))
            return traced

        module.trace = trace
        module.async_load = lambda traced: self.async_loaded.append(part_of(traced))
        module.lazy_load = lambda traced: self.lazy_loaded.append(part_of(traced))
        module.move_trace_to_device = lambda traced, device_id: self.moved_to_device.append(device_id)
        module.DataParallel = data_parallel

    def report(self, exit_code: int) -> dict:
        traces = [{k: v for k, v in t.items() if k != "traced"} for t in self.traces]
        return {"exit_code": exit_code, "imports": self.imports, "traces": traces,
                "async_loaded": self.async_loaded, "lazy_loaded": self.lazy_loaded}


# Run in the child: the stand-ins first, then sd21-compile's own main, as the Job runs it.
_CHILD = """
import json, sys
sys.path.insert(0, {here!r})
from test_neuron_seam import NeuronStandIns
stand_ins = NeuronStandIns.install()
from sd21.compile import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump(stand_ins.report(code), out)
raise SystemExit(code)
"""


def _compile_on_neuron(s3_env, tiny_weights, tmp_path, *, model_name: str, compiler_env: dict) -> tuple[dict, str]:
    from tests.support.sd21_testlib import BUCKET, subprocess_env

    env = {k: v for k, v in subprocess_env(s3_env).items() if k not in WATCHED and k != "SD21_IMAGE_NEURON_SDK"}
    record = tmp_path / f"{model_name}.json"
    args = ["--backend", "neuron", "--bucket", BUCKET, "--model-name", model_name, "--weights-source",
            str(tiny_weights), "--model-id", "local/tiny-sd21", "--model-revision", "test",
            "--workdir", str(tmp_path / "work")]
    code = _CHILD.format(here=str(Path(__file__).parent))
    result = subprocess.run([sys.executable, "-c", code, str(record), *args], env={**env, **compiler_env},
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert record.exists(), result.stderr[-3000:]
    return json.loads(record.read_text()), result.stderr


@pytest.fixture(scope="module")
def neuron_compile(s3_env, tiny_weights, tmp_path_factory):
    """sd21-compile on the neuron backend in a child, once per model name (each its own prefix)."""
    runs: dict[str, tuple[dict, str]] = {}

    def run(model_name: str, compiler_env: dict) -> tuple[dict, str]:
        if model_name not in runs:
            runs[model_name] = _compile_on_neuron(s3_env, tiny_weights, tmp_path_factory.mktemp(model_name),
                                                  model_name=model_name, compiler_env=compiler_env)
        return runs[model_name]

    return run


def _committed_manifest(s3_client, model_name: str) -> dict | None:
    from tests.support.sd21_testlib import BUCKET

    listing = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=f"models/{model_name}/")
    keys = [o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith("/manifest.json")]
    return json.loads(s3_client.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()) if keys else None


def _hashed_compiler_env() -> dict:
    """What the compile Job's pod spec sets (tests/workload: test_the_compile_pod_starts_with_...)."""
    from sd21.artifact import CompileInputs

    return dict(CompileInputs.defaults("neuron").compiler_env)


@pytest.mark.parametrize("started_with", ["the compile Job's environment", "no compiler environment"])
def test_the_environment_at_torch_xlas_import_is_the_one_the_artifact_hashes_or_nothing_is_made(
        started_with, neuron_compile, s3_client):
    with_env = started_with == "the compile Job's environment"
    model_name = "seam-with-env" if with_env else "seam-without-env"
    report, stderr = neuron_compile(model_name, _hashed_compiler_env() if with_env else {})
    manifest = _committed_manifest(s3_client, model_name)
    imported = {i["module"]: i for i in report["imports"]}
    if manifest is None:
        # Refused before any third-party import, in one clear line.
        assert report["exit_code"] == 2 and not imported, report
        assert [line for line in stderr.splitlines() if line.startswith("error:")] == [stderr.strip()]
        assert "NEURON_FUSE_SOFTMAX=<unset>" in stderr and "pod spec" in stderr
    else:
        hashed = manifest["compile_inputs"]["compiler_env"]
        # torch_xla comes in through diffusers, and torch-neuronx with it: both saw the hashed env.
        assert [i["module"] for i in report["imports"]] == ["torch_xla", "torch_neuronx"]
        assert "/diffusers/" in imported["torch_xla"]["importer"], imported["torch_xla"]
        for module in ("torch_xla", "torch_neuronx"):
            assert {k: imported[module]["env"][k] for k in hashed} == hashed, (module, imported[module])
    assert (manifest is not None) == with_env


def test_neuron_compile_traces_every_part_without_a_device(neuron_compile, s3_client):
    report, stderr = neuron_compile("seam-with-env", _hashed_compiler_env())
    assert report["exit_code"] == 0, stderr[-3000:]
    by_part = {t["module"]: t for t in report["traces"]}
    assert set(by_part) == {"TextEncoderWrapper", "UNetWrapper", "VaeDecoderWrapper", "Conv2d"}
    for trace in report["traces"]:
        assert trace["cpu_backend"] is True and trace["pjrt_device"] == "CPU", trace
        # `--target inf2`: two tokens, as optimum-neuron passes it.
        assert trace["args"][:2] == ["--target", "inf2"] and "--target=inf2" not in trace["args"], trace
        assert "--enable-fast-loading-neuron-binaries" in trace["args"]
    assert "--model-type=unet-inference" in by_part["UNetWrapper"]["args"]
    # UNet in bf16 (its timestep stays float32), the VAE decoder in float32.
    assert by_part["UNetWrapper"]["dtypes"] == ["torch.bfloat16", "torch.float32", "torch.bfloat16"]
    assert by_part["VaeDecoderWrapper"]["dtypes"] == ["torch.float32"]
    assert sorted(report["async_loaded"]) == sorted(by_part)
    assert report["lazy_loaded"] == ["UNetWrapper"]
    manifest = _committed_manifest(s3_client, "seam-with-env")
    assert sorted(f["path"] for f in manifest["files"] if f["path"].startswith("traced/")) == [
        "traced/text_encoder.pt", "traced/unet.pt", "traced/vae_decoder.pt", "traced/vae_post_quant_conv.pt"]


@pytest.fixture()
def torch_neuronx():
    stand_ins = NeuronStandIns.install()
    yield stand_ins
    stand_ins.uninstall()


def test_neuron_load_is_plain_jit_load_and_the_unet_data_parallel(torch_neuronx, tmp_path):
    """As the SD2.1-512 sample loads its async-loaded parts: no move_trace_to_device."""
    import torch

    from sd21 import backends

    path = tmp_path / "part.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Conv2d(4, 4, 1).eval(), (torch.zeros(1, 4, 8, 8),)), str(path))
    for part in ("text_encoder", "vae_decoder", "vae_post_quant_conv"):
        assert isinstance(backends.load_traced("neuron", path, part), torch.jit.ScriptModule)
    backends.load_traced("neuron", path, "unet")
    assert torch_neuronx.moved_to_device == []
    assert torch_neuronx.data_parallel == [[0, 1]]


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
