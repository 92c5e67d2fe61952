"""Rebuild an image's Python package set from metadata-only wheels, then run its Dockerfile's pip steps.

docker cannot build here and the Neuron wheels are not on a public index, so each package is a
stand-in: a wheel holding only ``<name>-<version>.dist-info/METADATA`` with the package's
Requires-Dist. pip resolves, installs, uninstalls and checks those exactly as it would the real
wheels, which is all `pip install -r ... && pip check` depends on.

Where stand-ins come from:
- the base image's packages: the recorded pins and Requires-Dist (model_image/base_image/*.toml);
- everything else: the dev venv's installed distributions (its METADATA), which holds the same
  pinned versions as our requirements files.

Limits:
- one version per package is offered (two for the packages the base record pins differently);
  a transitive package the base image does not pin resolves to the dev venv's version, not to
  PyPI's newest at image build time;
- Requires-Dist without an ``extra`` marker is evaluated for the image (CPython 3.12 on Linux
  x86_64) when the stand-in is written; requirements under an extra are kept and evaluated by the
  interpreter running the test; Requires-Python is dropped;
- base-image packages the record lists as not modelled are absent, so a conflict only they would
  cause is not seen; nor is anything pip does not declare (ABI, native libraries);
- `pip install --no-deps <local path>` steps (our own package, which declares no dependencies)
  are skipped: building it needs a build backend from an index.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# The environment markers of the images' interpreters (both CPython 3.12 on Linux x86_64).
IMAGE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.11",
    "implementation_name": "cpython",
    "implementation_version": "3.12.11",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
# Not offered as stand-ins: the installer itself.
NOT_OFFERED = {"pip"}


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    requires_dist: tuple[str, ...] = ()
    provides_extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaseImage:
    """The recorded package set of a base image: what it installs and what it leaves out."""
    pinned: tuple[Package, ...] = ()
    from_dev_venv: tuple[str, ...] = ()
    standins: tuple[Package, ...] = ()
    not_modelled: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> "BaseImage":
        data = tomllib.loads(path.read_text())
        unpinned = data.get("unpinned", {})
        return cls(
            pinned=tuple(Package(p["name"], p["version"], tuple(p["requires_dist"])) for p in data["package"]),
            from_dev_venv=tuple(unpinned.get("from_dev_venv", ())),
            standins=tuple(Package(n, v) for n, v in unpinned.get("standin_version", {}).items()),
            not_modelled=tuple(unpinned.get("not_modelled", ())),
        )

    def install_args(self) -> list[str]:
        return ([f"{p.name}=={p.version}" for p in self.pinned + self.standins] + list(self.from_dev_venv))


def for_image(requirement: str) -> str | None:
    """The requirement as it applies in the image: None when its marker is false there."""
    parsed = Requirement(requirement)
    if parsed.marker is None or "extra" in str(parsed.marker):
        return requirement
    if not parsed.marker.evaluate(IMAGE_MARKERS):
        return None
    parsed.marker = None
    return str(parsed)


def write_standin(directory: Path, package: Package) -> Path:
    """A wheel with nothing but its metadata."""
    dist = f"{canonicalize_name(package.name).replace('-', '_')}-{package.version}"
    requires = [r for r in map(for_image, package.requires_dist) if r is not None]
    metadata = "".join(
        [f"Metadata-Version: 2.1\nName: {package.name}\nVersion: {package.version}\n"]
        + [f"Provides-Extra: {extra}\n" for extra in package.provides_extra]
        + [f"Requires-Dist: {requirement}\n" for requirement in requires]
    )
    wheel = "Wheel-Version: 1.0\nGenerator: image_environment\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    info = f"{dist}.dist-info"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(f"{info}/WHEEL", wheel)
        archive.writestr(f"{info}/RECORD", f"{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    return path


def dev_venv_packages() -> list[Package]:
    """What the interpreter running the tests has installed, as stand-in descriptions."""
    packages = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonicalize_name(name) not in NOT_OFFERED:
            packages[canonicalize_name(name)] = Package(
                name, dist.version, tuple(dist.requires or ()), tuple(dist.metadata.get_all("Provides-Extra") or ()))
    return list(packages.values())


def pip_commands(dockerfile: Path) -> list[list[str]]:
    """The pip invocations of the Dockerfile's RUN instructions, in order, as argv after `pip`."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    commands = []
    for line in text.splitlines():
        instruction = line.strip().split(None, 1)
        if len(instruction) < 2 or instruction[0].upper() != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", instruction[1]):
            argv = shlex.split(command)
            if argv[:1] in (["pip"], ["pip3"]):
                commands.append(argv[1:])
            elif argv[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
                commands.append(argv[3:])
    return commands


def installs_local_path(argv: list[str]) -> bool:
    return argv[:1] == ["install"] and any(arg == "." or arg.startswith(("./", "/")) for arg in argv[1:])


@dataclass
class ImageEnvironment:
    """A fresh venv that pip reaches only through --no-index --find-links <stand-ins>."""
    root: Path
    standins: Path = field(init=False)
    python: Path = field(init=False)

    def __post_init__(self):
        self.standins = self.root / "standins"
        self.standins.mkdir(parents=True)
        venv = self.root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
        self.python = venv / "bin" / "python"

    def copy_to(self, root: Path) -> "ImageEnvironment":
        """Another environment as this one stands now: a venv and its stand-ins are directories,
        and copying them costs a fraction of installing them again."""
        shutil.copytree(self.root, root, symlinks=True)
        clone = object.__new__(ImageEnvironment)
        clone.root, clone.standins, clone.python = root, root / "standins", root / "venv" / "bin" / "python"
        return clone

    def offer(self, packages) -> None:
        for package in packages:
            write_standin(self.standins, package)

    def pip(self, argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run pip on the venv, isolated from this machine's pip config, env and indexes."""
        if argv[:1] == ["install"]:
            argv = ["install", "--no-index", "--find-links", str(self.standins), *argv[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        return subprocess.run(
            [sys.executable, "-m", "pip", "--isolated", "--python", str(self.python), *argv],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        )

    def run_dockerfile_pip_steps(self, dockerfile: Path) -> list[tuple[list[str], subprocess.CompletedProcess]]:
        """The Dockerfile's own pip steps, stopping at the first that fails (as `&&` and docker do)."""
        results = []
        for argv in pip_commands(dockerfile):
            if installs_local_path(argv):
                continue
            result = self.pip(argv, cwd=dockerfile.parent)
            results.append((argv, result))
            if result.returncode != 0:
                break
        return results
