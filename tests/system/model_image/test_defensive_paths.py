"""The defensive paths, each driven to its edge: the queue bound, the archive guards,
and which S3 errors are retried."""
from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import threading

import pytest


# --- the queue admits exactly queue_size waiting requests -----------------------------

class BlockingPipeline:
    """Generations wait until released; counts how many reached the device."""

    def __init__(self):
        self.release = threading.Event()
        self.started = 0

    def generate(self, params, should_stop=None):
        if params.prompt == "warm up":
            return "warm"
        self.started += 1
        self.release.wait(30)
        return "image"


@pytest.mark.parametrize("queue_size", [1, 3])
def test_exactly_queue_size_requests_wait_and_the_next_gets_429(queue_size):
    from sd21.pipeline import GenerationParams
    from sd21.service import GenerationService, Rejected, ServiceSettings

    pipeline = BlockingPipeline()
    service = GenerationService(ServiceSettings(queue_size=queue_size, request_timeout_s=30), pipeline=pipeline)
    service.load_in_background().join(10)
    assert service.is_ready

    async def scenario():
        params = GenerationParams(prompt="x", steps=1)
        running = asyncio.ensure_future(service.generate(params))
        while pipeline.started < 1:  # one on the device
            await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(service.generate(params)) for _ in range(queue_size)]
        await asyncio.sleep(0.05)
        assert service.queued == queue_size
        with pytest.raises(Rejected) as refused:
            await service.generate(params)
        assert refused.value.status == 429 and refused.value.retry_after >= 1
        pipeline.release.set()
        return await asyncio.gather(running, *waiting)

    try:
        assert asyncio.run(scenario()) == ["image"] * (queue_size + 1)
    finally:
        pipeline.release.set()
        service.shutdown()


# --- staging never writes outside its target ------------------------------------------

class BytesStream:
    """What extract_verified reads: .read() and a running sha256, like RangedStream."""

    def __init__(self, data: bytes):
        self.buffer, self.digest = io.BytesIO(data), hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self.buffer.read(n)
        self.digest.update(chunk)
        return chunk


def archive(*members: tarfile.TarInfo, payload: bytes = b"x") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if member.isfile():
                member.size = len(payload)
                tar.addfile(member, io.BytesIO(payload))
            else:
                tar.addfile(member)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize("bad, reason", [
    (member("../escape.txt"), "unsafe path"),
    (member("/etc/escape.txt"), "unsafe path"),
    (member("traced/../../escape.txt"), "unsafe path"),
    (member("link", tarfile.SYMTYPE, "/etc/passwd"), "non-file entry"),
    (member("hard", tarfile.LNKTYPE, "traced/unet.pt"), "non-file entry"),
])
def test_archive_entries_that_would_escape_are_refused(tmp_path, bad, reason):
    from sd21.stage import CorruptArtifact, extract_verified

    data = archive(member("ok.txt"), bad)
    target = tmp_path / "stage" / "target"
    target.mkdir(parents=True)
    manifest = {"files": [], "archive": {"sha256": hashlib.sha256(data).hexdigest()}}
    with pytest.raises(CorruptArtifact, match=reason):
        extract_verified(BytesStream(data), target, manifest)
    assert not (tmp_path / "stage" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not (target / "link").exists()


def test_a_file_not_in_the_manifest_or_with_other_bytes_is_refused(tmp_path):
    from sd21.stage import CorruptArtifact, extract_verified

    data = archive(member("a.txt"), payload=b"abc")
    digest = hashlib.sha256(data).hexdigest()
    good = {"path": "a.txt", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    extract_verified(BytesStream(data), tmp_path / "ok", {"files": [good], "archive": {"sha256": digest}})
    with pytest.raises(CorruptArtifact, match="not in the manifest"):
        extract_verified(BytesStream(data), tmp_path / "extra", {"files": [], "archive": {"sha256": digest}})
    other = {**good, "sha256": "0" * 64}
    with pytest.raises(CorruptArtifact, match="differ from manifest"):
        extract_verified(BytesStream(data), tmp_path / "other", {"files": [other], "archive": {"sha256": digest}})


# --- transient S3 errors are retried, permanent ones are not --------------------------

def client_error(code: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")


@pytest.mark.parametrize("code", ["503", "SlowDown", "InternalError", "RequestTimeout"])
def test_transient_errors_are_retried_until_success(code, monkeypatch):
    from sd21 import s3

    monkeypatch.setattr(s3.time, "sleep", lambda seconds: None)
    calls = []

    def action():
        calls.append(1)
        if len(calls) < 3:
            raise client_error(code)
        return "done"

    assert s3.with_retries(action, "object") == "done" and len(calls) == 3


@pytest.mark.parametrize("code", ["AccessDenied", "NoSuchKey", "403", "404"])
def test_permanent_errors_are_not_retried(code, monkeypatch):
    from botocore.exceptions import ClientError

    from sd21 import s3

    monkeypatch.setattr(s3.time, "sleep", lambda seconds: None)
    calls = []

    def action():
        calls.append(1)
        raise client_error(code)

    with pytest.raises(ClientError):
        s3.with_retries(action, "object")
    assert len(calls) == 1


def test_retries_give_up_after_their_attempts_and_back_off(monkeypatch):
    from sd21 import s3

    delays = []
    monkeypatch.setattr(s3.time, "sleep", delays.append)
    with pytest.raises(s3.TransientError):
        s3.with_retries(lambda: (_ for _ in ()).throw(s3.TransientError("short read")), "object", attempts=4)
    assert len(delays) == 3 and delays[0] < delays[-1]


def test_a_short_ranged_read_is_retried(monkeypatch, capsys):
    """A range that comes back short is fetched again, not passed on to the extractor."""
    from sd21 import s3
    from sd21.stage import RangedStream

    monkeypatch.setattr(s3.time, "sleep", lambda seconds: None)
    data = bytes(range(256)) * 64
    answers = {"short": 1}

    class Client:
        def get_object(self, Bucket, Key, Range):
            start, end = (int(x) for x in Range.removeprefix("bytes=").split("-"))
            body = data[start:end + 1]
            if answers["short"] and start == 4096:  # the second range
                answers["short"] -= 1
                body = body[:-1]
            return {"Body": io.BytesIO(body)}

    stream = RangedStream(Client(), "b", "k", len(data), chunk=4096, workers=2)
    try:
        assert stream.read() == data
    finally:
        stream.close()
    assert stream.digest.hexdigest() == hashlib.sha256(data).hexdigest()
    # The log names the range that came back short, as an operator would look for it.
    out = capsys.readouterr().out
    assert "retry 1/4 for k bytes 4096-8191 in " in out and ": short read 4095 of 4096 bytes at 4096" in out
