"""Run one of our containers the way the kubelet runs it, from its synthesized spec.

Debian's bubblewrap builds the container's world, unprivileged:
* root filesystem: an empty tmpfs made read-only, holding only "the image" — this
  machine's system directories, the Python installation and the project's virtual
  environment, all read-only; the image's WORKDIR holds the package sources as in the
  Dockerfile (`COPY sd21 ./sd21`). `readOnlyRootFilesystem: false` leaves it writable.
* the pod's volumes at the container's mountPaths: each emptyDir is a fresh directory
  per pod, shared by the pod's containers (medium Memory: a directory on /dev/shm);
  `readOnly` mounts are read-only. Nothing else is writable.
* the container's runAsUser/runAsGroup (else the pod's, else the image's USER);
* env: the image's ENV (parsed from the Dockerfile) overlaid by the container's env;
* command + args in the container's workingDir, else the image's WORKDIR.

What differs from a cluster is in `Adaptations` and nowhere else: the backend is
`cpu`, S3 is a loopback server, the weights come from a test mirror, the ports are
free loopback ports, and the Service DNS names point at loopback. Resource limits,
probes' timing, fsGroup and the network namespace are not emulated.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

if TYPE_CHECKING:
    from tests.support.pods.iam import RoleProxies

ROOT = Path(__file__).resolve().parents[3]
MODEL_IMAGE = ROOT / "model_image"
# The image's PATH comes from its base image; ours puts the entrypoints on it.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNRESOLVED = re.compile(r"\$\{[^}]*\}")


# --- the image -----------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    """What a Dockerfile gives every container of the image: ENV, WORKDIR, USER."""

    dockerfile: Path
    env: Mapping[str, str]
    workdir: str
    user: int

    @classmethod
    def from_dockerfile(cls, path: Path) -> "Image":
        text = path.read_text().replace("\\\n", " ")
        env: dict[str, str] = {}
        workdir, user = "/", 0
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            op, _, rest = line.partition(" ")
            op = op.upper()
            if op == "ENV":
                for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)', rest):
                    env[key] = value[1:-1] if value.startswith('"') else value
            elif op == "WORKDIR":
                workdir = rest.strip()
            elif op == "USER":
                user = int(rest.strip().split(":")[0])
            elif op in ("FROM",):
                env, workdir, user = {}, "/", 0  # a new stage starts over
        return cls(dockerfile=path, env=env, workdir=workdir, user=user)


def image_for(container: dict) -> Image:
    """Which of our Dockerfiles built this container's image (by its tag)."""
    from stacks.storage.repository import GATEWAY_TAG_SUFFIX

    dockerfile = "Dockerfile.gateway" if container["image"].endswith(GATEWAY_TAG_SUFFIX) else "Dockerfile"
    return Image.from_dockerfile(MODEL_IMAGE / dockerfile)


# --- the differences from a cluster, in one place --------------------------------------

@dataclass
class Adaptations:
    """The only changes the harness makes to a synthesized container."""

    s3_env: Mapping[str, str]                       # loopback S3 endpoint + test credentials
    bucket: str                                     # replaces the bucket name (a CloudFormation token)
    backend: Optional[str] = "cpu"                  # replaces SD21_BACKEND (None keeps the spec's)
    weights_source: Optional[str] = None            # replaces SD21_WEIGHTS_SOURCE (a test mirror)
    ports: dict[int, int] = field(default_factory=dict)       # container port -> free loopback port
    hosts: dict[str, str] = field(default_factory=dict)       # in-cluster URL -> loopback URL
    extra_env: dict[str, str] = field(default_factory=dict)   # e.g. the version for the cpu backend
    jobs: dict[str, str] = field(default_factory=dict)        # replaces the job queue/topic (CloudFormation tokens)
    roles: Optional["RoleProxies"] = None           # the pod's role enforced in front of S3/SQS/SNS/CloudWatch (iam.py)

    def env(self, env: Mapping[str, str], pod: Optional[dict] = None) -> dict[str, str]:
        env = dict(env)
        if self.backend and "SD21_BACKEND" in env:
            env["SD21_BACKEND"] = self.backend
        env["SD21_HOST"] = "127.0.0.1"  # our servers listen on loopback only
        if "SD21_BUCKET" in env:
            env["SD21_BUCKET"] = self.bucket
        if "AWS_REGION" in env:
            env["AWS_REGION"] = self.s3_env.get("AWS_DEFAULT_REGION", "us-east-1")
        if self.weights_source and "SD21_WEIGHTS_SOURCE" in env:
            env["SD21_WEIGHTS_SOURCE"] = self.weights_source
        for name, value in self.jobs.items():
            if name in env:
                env[name] = value
        for name, value in env.items():
            for cluster_url, local_url in self.hosts.items():
                value = value.replace(cluster_url, local_url)
            if name.endswith("PORT") and value.isdigit() and int(value) in self.ports:
                value = str(self.ports[int(value)])
            env[name] = value
        env.update(self.s3_env)
        env.update(self._role_endpoints(pod))
        env.update(self.extra_env)
        # OpenBLAS needs these on some of our CPUs (the machine sets them for every process).
        env.update({k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")})
        return env

    def _role_endpoints(self, pod: Optional[dict]) -> dict[str, str]:
        """The pod's AWS endpoints become its role's proxy; an endpoint a test set itself (an
        unreachable one) is kept. The proxy learns the test's resources from what is substituted."""
        if self.roles is None:
            return {}
        if pod is None:
            raise AssertionError("enforcing a role needs the pod spec (its serviceAccountName)")
        from tests.support.pods.iam import ENDPOINT_NAMES

        url = self.roles.endpoint(pod, {"SD21_BUCKET": self.bucket, **self.jobs})
        return {name: url for name in ENDPOINT_NAMES if self.s3_env.get(name) == self.roles.upstream}

    def port(self, container_port: int) -> int:
        return self.ports.get(container_port, container_port)


# --- pods and containers -------------------------------------------------------------

def pod_spec(obj: dict) -> dict:
    """The pod template of a Job or Deployment."""
    return obj["spec"]["template"]["spec"]


def find_container(pod: dict, name: str) -> dict:
    for container in pod.get("initContainers", []) + pod["containers"]:
        if container["name"] == name:
            return container
    raise KeyError(f"no container {name!r} in the pod spec")


class Pod:
    """The pod's volumes, made once and shared by its containers, like the kubelet does."""

    def __init__(self, spec: dict, root: Path):
        self.spec = spec
        self.root = Path(tempfile.mkdtemp(prefix="pod-", dir=root))
        self.volumes: dict[str, Path] = {}
        for volume in spec.get("volumes", []):
            if "emptyDir" not in volume:
                raise NotImplementedError(f"volume {volume['name']}: only emptyDir volumes are emulated")
            if volume["emptyDir"].get("medium") == "Memory":
                path = Path(tempfile.mkdtemp(prefix=f"{volume['name']}-", dir="/dev/shm"))
            else:
                path = self.root / volume["name"]
                path.mkdir()
            self.volumes[volume["name"]] = path

    def container(self, name: str, adaptations: Adaptations) -> "Container":
        return Container(self, find_container(self.spec, name), adaptations)

    def cleanup(self) -> None:
        for path in self.volumes.values():
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _security(container: dict, pod: dict, image: Image) -> tuple[int, int, bool]:
    own, pods = container.get("securityContext", {}), pod.get("securityContext", {})
    uid = own.get("runAsUser", pods.get("runAsUser", image.user))
    gid = own.get("runAsGroup", pods.get("runAsGroup", uid))
    return uid, gid, bool(own.get("readOnlyRootFilesystem", False))


class Container:
    def __init__(self, pod: Pod, spec: dict, adaptations: Adaptations):
        self.pod, self.spec, self.adaptations = pod, spec, adaptations
        self.image = image_for(spec)
        self.name = spec["name"]
        self.log_path = pod.root / f"{self.name}.log"  # each start gets its own, like a container instance
        self.process: Optional[subprocess.Popen] = None
        self.child_pid: Optional[int] = None

    # -- what the kubelet would pass --------------------------------------------------
    def env(self) -> dict[str, str]:
        declared = {}
        for item in self.spec.get("env", []):
            if "value" not in item:
                raise NotImplementedError(f"env {item['name']}: only literal values are emulated")
            declared[item["name"]] = item["value"]
        env = {"PATH": f"{Path(sys.executable).parent}:{SYSTEM_PATH}", "HOME": "/",
               **self.image.env, **declared}
        env = self.adaptations.env(env, self.pod.spec)
        unresolved = {k: v for k, v in env.items() if UNRESOLVED.search(v)}
        if unresolved:
            raise AssertionError(f"{self.name}: env still holds deploy-time tokens after adaptation: {unresolved}")
        return env

    def argv(self, command: Optional[list[str]] = None) -> list[str]:
        uid, gid, read_only_root = _security(self.spec, self.pod.spec, self.image)
        workdir = self.spec.get("workingDir", self.image.workdir)
        python_home = Path(sys.base_prefix).resolve()
        venv = Path(sys.prefix)
        args = ["bwrap", "--unshare-user", "--uid", str(uid), "--gid", str(gid),
                "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
                "--tmpfs", "/"]
        for system_dir in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32"):
            if os.path.islink(system_dir):
                args += ["--symlink", os.readlink(system_dir), system_dir]
            elif os.path.isdir(system_dir):
                args += ["--ro-bind", system_dir, system_dir]
        # The image: a Debian/Ubuntu base has /tmp, /var/tmp and /home (read-only here like the rest).
        args += ["--dir", "/tmp", "--dir", "/var/tmp", "--dir", "/home", "--dev", "/dev", "--proc", "/proc"]
        mounts = {m["mountPath"]: m for m in self.spec.get("volumeMounts", [])}
        if "/dev/shm" not in mounts:
            args += ["--tmpfs", "/dev/shm"]  # the runtime's default 64 MiB shm
        for path, mount in sorted(mounts.items()):
            source = self.pod.volumes[mount["name"]]
            args += ["--ro-bind" if mount.get("readOnly") else "--bind", str(source), path]
        # The image's software, bound after the volumes so that a checkout under a mounted
        # path (a clone in /tmp) stays visible at its own path: the Python installation,
        # the virtual environment (the entrypoints' shebangs name it) and the package
        # sources, also at the image's WORKDIR (COPY sd21 ./sd21).
        for path in dict.fromkeys([python_home, venv, MODEL_IMAGE]):
            args += ["--ro-bind", str(path), str(path)]
        args += ["--ro-bind", str(MODEL_IMAGE), self.image.workdir]
        if read_only_root:
            args += ["--remount-ro", "/"]
        args += ["--chdir", workdir, "--clearenv"]
        for name, value in self.env().items():
            args += ["--setenv", name, value]
        args += ["--"]
        args += command or (self.spec.get("command", []) + self.spec.get("args", []))
        return args

    # -- running it -------------------------------------------------------------------
    def start(self, command: Optional[list[str]] = None) -> "Container":
        read_end, write_end = os.pipe()
        descriptor, path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log", dir=self.pod.root)
        os.close(descriptor)
        self.log_path = Path(path)
        argv = self.argv(command)
        argv[1:1] = ["--info-fd", str(write_end)]  # bwrap reports the contained process's pid
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, pass_fds=(write_end,))
        os.close(write_end)
        self.child_pid = _read_child_pid(read_end, self.process)
        return self

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout}s:\n{self.log()}")

    def run(self, timeout: float = 300, command: Optional[list[str]] = None) -> "Result":
        self.start(command)
        code = self.wait(timeout)
        return Result(code, self.log())

    def signal(self, sig: int) -> None:
        """Deliver a signal to the container's process, as the kubelet does on stop."""
        os.kill(self.child_pid or self.process.pid, sig)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_http(self, probe: str, timeout: float, status: int = 200) -> None:
        """Poll one of the container's own probes (readinessProbe, ...) until it answers `status`."""
        import httpx

        get = self.spec[probe]["httpGet"]
        url = f"http://127.0.0.1:{self.adaptations.port(get['port'])}{get['path']}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(url, timeout=2).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: {url} did not answer {status} within {timeout}s:\n{self.log()}")


def _read_child_pid(fd: int, process: subprocess.Popen, timeout: float = 30) -> Optional[int]:
    """bwrap writes {"child-pid": N} to its info fd once the sandbox is up."""
    import select

    text, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return None  # bwrap failed before starting the sandbox; its log says why
                text += chunk
                try:
                    return json.loads(text)["child-pid"]
                except ValueError:
                    continue
            elif process.poll() is not None:
                return None
        raise AssertionError("bwrap did not report the sandbox's pid")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Result:
    returncode: int
    output: str


def bubblewrap_available() -> Optional[str]:
    """None when bwrap can build a user namespace here, else why not."""
    if not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` (make test does it)"
    probe = subprocess.run(["bwrap", "--unshare-user", "--uid", "10001", "--ro-bind", "/", "/", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bwrap cannot create a user namespace here: {probe.stderr.strip()}"
    return None

