"""Does an image, a Helm chart or a model revision exist? Plain HTTPS (stdlib), anonymous.

Images: the OCI distribution API (`GET /v2/<name>/manifests/<tag>`), with the anonymous
Bearer token flow the registry asks for in its `WWW-Authenticate` challenge (ECR Public,
registry.k8s.io, Docker Hub all answer so). Helm: the repository's index.yaml, or for
`oci://` charts the same manifest check. Hub: `GET /api/models/<id>/revision/<revision>`.
`overrides` maps a host to another base URL (the tests' loopback registries).

Three answers: True (exists), False (the registry says there is no such thing), or Unknown
raised (no answer: unreachable, a timeout, 429 rate limiting, 5xx, an answer we cannot read).
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
HUB = "huggingface.co"
TIMEOUT = 20


class Unknown(Exception):
    """The registry could not be asked (network, an unexpected answer): neither yes nor no."""


def split_image(ref: str) -> tuple[str, str, str]:
    """registry host, repository and tag of `host/repo/path:tag` (Docker Hub when no host)."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        raise ValueError(f"image reference {ref!r} has no tag")
    host, _, repository = name.partition("/")
    if "." not in host and ":" not in host:
        host, repository = "registry-1.docker.io", name if "/" in name else f"library/{name}"
    return host, repository, tag


@dataclass
class Registries:
    overrides: dict[str, str] = field(default_factory=dict)

    def _url(self, host: str, path: str) -> str:
        return self.overrides.get(host, f"https://{host}").rstrip("/") + path

    def _get(self, url: str, headers: dict[str, str]) -> tuple[int, bytes, dict]:
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise Unknown(f"{urllib.parse.urlsplit(url).netloc} did not answer ({error})") from None

    def _token(self, challenge: str) -> str:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if not challenge.lower().startswith("bearer") or "realm" not in fields:
            raise Unknown(f"unexpected authentication challenge {challenge!r}")
        query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
        realm = urllib.parse.urlsplit(fields["realm"])
        url = self._url(realm.netloc, realm.path) if realm.netloc in self.overrides else fields["realm"]
        status, body, _ = self._get(f"{url}?{query}", {})
        if status != 200:
            raise Unknown(f"no anonymous token from {fields['realm']} (HTTP {status})")
        try:
            answer = json.loads(body)
            return answer.get("token") or answer["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise Unknown(f"an unreadable token from {fields['realm']}") from None

    def image_exists(self, ref: str) -> bool:
        host, repository, tag = split_image(ref)
        url = self._url(host, f"/v2/{repository}/manifests/{tag}")
        headers = {"Accept": MANIFEST_TYPES}
        status, _, answer = self._get(url, headers)
        if status == 401:
            headers["Authorization"] = "Bearer " + self._token(answer.get("WWW-Authenticate", ""))
            status, _, _ = self._get(url, headers)
        if status in (200, 404):
            return status == 200
        if status in (401, 403):  # ECR Public and Docker Hub answer an unknown repository so
            return False
        raise Unknown(f"{host} answered HTTP {status} for {repository}:{tag}")

    def chart_exists(self, repository: str, chart: str, version: str) -> bool:
        if repository.startswith("oci://"):
            return self.image_exists(f"{repository.removeprefix('oci://')}:{version}")
        import yaml

        parts = urllib.parse.urlsplit(repository)
        status, body, _ = self._get(self._url(parts.netloc, parts.path.rstrip("/") + "/index.yaml"), {})
        if status != 200:
            raise Unknown(f"{repository}/index.yaml answered HTTP {status}")
        entries = (yaml.safe_load(body) or {}).get("entries", {})
        return any(str(entry.get("version")) == version for entry in entries.get(chart, []))

    def hub_revision_exists(self, model_id: str, revision: str) -> bool:
        status, _, _ = self._get(self._url(HUB, f"/api/models/{model_id}/revision/{revision}"), {})
        if status in (200, 401, 404):  # the hub answers 401 for a repository that is gone or gated
            return status == 200
        raise Unknown(f"{HUB} answered HTTP {status} for {model_id}@{revision}")
