"""sd21.s3, edge by edge: URLs, error classification, existence, retry timing, client config."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from sd21 import s3


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Op")


@pytest.mark.parametrize("url, parsed", [
    ("s3://bucket/a/b/", ("bucket", "a/b/")),
    ("s3://bucket", ("bucket", "")),
    ("s3://bucket/", ("bucket", "")),
])
def test_parse_url(url, parsed):
    assert s3.parse_url(url) == parsed


@pytest.mark.parametrize("url, message", [("https://bucket/x", "not an s3:// URL"), ("s3:///x", "no bucket"),
                                          ("S3://bucket/x", "not an s3:// URL")])
def test_parse_url_refuses(url, message):
    with pytest.raises(ValueError, match=message):
        s3.parse_url(url)


def test_error_classification():
    assert s3.error_code(client_error("NoSuchKey")) == "NoSuchKey"
    assert s3.error_code(ClientError({"Error": {}}, "Op")) == "ClientError"
    assert s3.error_code(KeyError("x")) == "KeyError"
    for code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
        assert s3.is_not_found(client_error(code)) and not s3.is_access_denied(client_error(code))
    for code in ("403", "AccessDenied", "Forbidden"):
        assert s3.is_access_denied(client_error(code)) and not s3.is_not_found(client_error(code))
    assert not s3.is_not_found(client_error("SlowDown")) and not s3.is_access_denied(client_error("SlowDown"))
    assert s3.is_missing_credentials(NoCredentialsError()) and not s3.is_missing_credentials(client_error("403"))
    for code in s3.TRANSIENT_CODES:
        assert s3.is_transient(client_error(code))
    assert s3.is_transient(EndpointConnectionError(endpoint_url="http://x")) and s3.is_transient(s3.TransientError())
    assert not s3.is_transient(client_error("AccessDenied")) and not s3.is_transient(ValueError())


class Listing:
    def __init__(self, *keys: str):
        self.keys, self.calls = keys, []

    def list_objects_v2(self, **kwargs):
        self.calls.append(kwargs)
        return {"Contents": [{"Key": k} for k in self.keys]} if self.keys else {}


def test_object_exists_matches_the_exact_key_only():
    listing = Listing("models/a/manifest.json")
    key = "/".join(["models", "a", "manifest.json"])  # equal, not the same object
    assert s3.object_exists(listing, "b", key)
    assert listing.calls == [{"Bucket": "b", "Prefix": "models/a/manifest.json", "MaxKeys": 1}]
    assert not s3.object_exists(Listing("models/a/manifest.json.tmp"), "b", "models/a/manifest.json")
    assert not s3.object_exists(Listing(), "b", "models/a/manifest.json")


def test_retry_timing_is_exponential_with_jitter_and_five_attempts_by_default(monkeypatch):
    delays, calls = [], []
    monkeypatch.setattr(s3.time, "sleep", delays.append)
    monkeypatch.setattr(s3.random, "random", lambda: 0.5)  # the middle of the jitter

    def action():
        calls.append(1)
        raise client_error("503")

    with pytest.raises(ClientError):
        s3.with_retries(action, "object")
    assert len(calls) == 5
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6])
    monkeypatch.setattr(s3.random, "random", lambda: 0.0)
    delays.clear()
    with pytest.raises(ClientError):
        s3.with_retries(action, "object", attempts=2, base_delay=1.0)
    assert delays == pytest.approx([0.5])


def test_retries_say_what_they_retry(monkeypatch, capsys):
    monkeypatch.setattr(s3.time, "sleep", lambda seconds: None)
    answers = [client_error("SlowDown")]

    def action():
        if answers:
            raise answers.pop()
        return "ok"

    assert s3.with_retries(action, "the manifest") == "ok"
    assert "retry 1/4 for the manifest" in capsys.readouterr().out
    answers.append(client_error("SlowDown"))
    assert s3.with_retries(action, "the archive", attempts=2) == "ok"
    assert "retry 1/1 for the archive" in capsys.readouterr().out


def test_client_retries_in_standard_mode_with_a_pool_of_the_asked_size():
    client = s3.client(max_pool=7)
    config = client.meta.config
    assert config.retries["mode"] == "standard" and config.retries["total_max_attempts"] == 6  # 5 retries + 1
    assert config.max_pool_connections == 7
    assert s3.client().meta.config.max_pool_connections == 16
