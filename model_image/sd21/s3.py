"""S3 helpers shared by compile and stage. AWS_ENDPOINT_URL_S3 is honoured by boto3."""
from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

T = TypeVar("T")

TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "SlowDown", "RequestTimeout", "Throttling"}


class TransientError(Exception):
    """Retryable failure (network, 5xx, short read)."""


def client(max_pool: int = 16):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=max_pool)
    )


def parse_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, key


def error_code(error: Exception) -> str:
    """The S3 error code of a ClientError (e.g. NoSuchKey, AccessDenied), else the exception's name."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def is_not_found(error: Exception) -> bool:
    return error_code(error) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def is_access_denied(error: Exception) -> bool:
    return error_code(error) in ("403", "AccessDenied", "Forbidden")


def is_missing_credentials(error: Exception) -> bool:
    """No credentials at all: with Pod Identity, the association was not effective when the pod started."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    return isinstance(error, (NoCredentialsError, PartialCredentialsError))


def is_transient(error: Exception) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError, ResponseStreamingError

    if isinstance(error, (TransientError, ConnectionError, ReadTimeoutError, ResponseStreamingError)):
        return True
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in TRANSIENT_CODES


def with_retries(action: Callable[[], T], what: str, attempts: int = 5, base_delay: float = 0.2) -> T:
    """Retry transient failures with exponential backoff and jitter."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - classified below
            if not is_transient(error) or attempt == attempts:
                raise
            delay = base_delay * 2 ** (attempt - 1) * (0.5 + random.random())
            print(f"retry {attempt}/{attempts - 1} for {what} in {delay:.1f}s: {error}", flush=True)
            time.sleep(delay)
    raise AssertionError("unreachable")


def object_exists(s3, bucket: str, key: str) -> bool:
    """Whether `key` exists. A ListObjectsV2 on the key itself, not a HeadObject: S3
    answers a HeadObject of a missing key with 403 (not 404) unless the caller may
    list the bucket without a prefix condition, and our roles may only list their prefix."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(item["Key"] == key for item in listing.get("Contents", []))
