"""The S3 calls this product makes, with botocore doing retries and SigV4 signing."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from image_search.errors import (
    BucketNotFoundError,
    CredentialsMissingError,
    ObjectChangedError,
    StorageUnavailableError,
)

LOG = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    *(".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"),
    *(".heic", ".heif", ".avif"),  # what phones save
)
# Codes that mean "the object or bucket is not there", as opposed to S3 being unavailable.
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
NO_CREDENTIALS = (
    "no AWS credentials found: boto3 reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then the "
    "profile named by AWS_PROFILE (or 'default') in ~/.aws/credentials and ~/.aws/config (`aws "
    "configure` or `aws sso login` write them), then a container or instance role"
)
# A GET with If-Match whose object has another ETag now.
_CHANGED_CODES = frozenset({"PreconditionFailed", "412"})
_NOT_MODIFIED_CODES = frozenset({"NotModified", "304"})
# A conditional write or delete that lost: the ETag changed, the object appeared (412), another
# conditional request on the key was in flight (409), or an If-Match object is gone (404).
_CONDITION_CODES = _MISSING_CODES | {
    "PreconditionFailed",
    "412",
    "ConditionalRequestConflict",
    "409",
}

S3Client = Any  # boto3 clients are generated at run time and have no static type.


@dataclass(frozen=True, slots=True)
class S3Object:
    key: str
    folder: str
    etag: str
    size: int
    # LastModified as listed (aware, UTC): what a photo without an EXIF date is dated by.
    modified: datetime | None = None


def make_client(*, max_connections: int = 10) -> S3Client:
    """An S3 client; the endpoint and region come from boto3's standard variables.

    ``s3v4`` matters: with a custom endpoint boto3 would otherwise presign with SigV2.
    ``standard`` retry mode retries throttling and 5xx with backoff, so no hand-written loops.
    """
    _quiet_sdk_debug_logs()
    config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=max_connections,
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.session.Session().client("s3", config=config)


def _quiet_sdk_debug_logs() -> None:
    """Cap botocore's loggers at INFO unless a level was set on them on purpose.

    At DEBUG, botocore logs every request's headers (the session token among them), the string
    to sign and the signature, presigned URLs' too: enough to replay a request. A root logger
    turned to DEBUG (or AWS_LAMBDA_LOG_LEVEL=DEBUG) must not write them to CloudWatch.
    """
    for name in ("botocore", "boto3", "s3transfer"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def folder_of(key: str) -> str:
    """A key's folder is its first path segment; nested keys stay in their top-level folder."""
    head, sep, _ = key.partition("/")
    return head if sep else ""


def is_image_key(key: str) -> bool:
    return key.lower().endswith(IMAGE_EXTENSIONS) and not key.endswith("/")


def is_indexed_key(key: str, *, folders: list[str] | tuple[str, ...], exclude_prefix: str) -> bool:
    """Whether the build lists ``key``: an image in one of ``folders`` (any top-level folder when
    empty), outside ``exclude_prefix`` (the index's own objects). Ingest applies the same rule
    to the keys events name."""
    if (exclude_prefix and key.startswith(exclude_prefix)) or not is_image_key(key):
        return False
    if not folder_of(key):
        return False  # root-level objects belong to no folder; documented in the README
    return not folders or any(key.startswith(f"{folder}/") for folder in folders)


@contextmanager
def translate_errors(bucket: str, *, keep: frozenset[str] = _MISSING_CODES) -> Iterator[None]:
    """Turn botocore failures into this package's errors, keeping the codes in ``keep`` (by
    default NoSuchKey) as they are."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code == "NoSuchBucket":
            raise BucketNotFoundError(f"bucket {bucket!r} does not exist") from exc
        if code in {"AccessDenied", "403"}:
            raise BucketNotFoundError(f"access denied to bucket {bucket!r}") from exc
        if code in keep:
            raise
        raise StorageUnavailableError(f"S3 error {code or 'unknown'} on bucket {bucket!r}") from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise CredentialsMissingError(f"{NO_CREDENTIALS} ({exc})") from exc
    except BotoCoreError as exc:
        raise StorageUnavailableError(f"S3 unreachable: {type(exc).__name__}") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: BaseException) -> bool:
    """True when ``exc`` is S3 saying the key does not exist."""
    return isinstance(exc, ClientError) and _code(exc) in _MISSING_CODES


def list_objects(client: S3Client, *, bucket: str, prefix: str = "") -> Iterator[dict[str, Any]]:
    """Every object under ``prefix``; the paginator follows continuation tokens past 1,000."""
    with translate_errors(bucket):
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])


def list_images(
    client: S3Client, *, bucket: str, folders: list[str], exclude_prefix: str
) -> list[S3Object]:
    """Image objects in ``folders`` (all top-level folders when empty), sorted by folder, key.

    Each key comes once, even when folders overlap (``animals`` and ``animals/deep``).
    """
    prefixes = [f"{folder}/" for folder in folders] or [""]
    # A folder inside another listed one adds nothing; listing it would only repeat keys.
    prefixes = [p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes)]
    found: dict[str, S3Object] = {}
    for prefix in dict.fromkeys(prefixes):
        for item in list_objects(client, bucket=bucket, prefix=prefix):
            key = item["Key"]
            if not is_indexed_key(key, folders=(), exclude_prefix=exclude_prefix):
                continue  # listed under one of the folders' prefixes already
            found[key] = S3Object(
                key, folder_of(key), item["ETag"].strip('"'), int(item["Size"]), _modified(item)
            )
    return sorted(found.values(), key=lambda obj: (obj.folder, obj.key))


def _modified(item: dict[str, Any]) -> datetime | None:
    # botocore parses LastModified into an aware datetime; anything else is not one.
    value = item.get("LastModified")
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


def get_bytes(client: S3Client, *, bucket: str, key: str, etag: str | None = None) -> bytes:
    """The object's bytes; with ``etag``, only if the object still has it (If-Match).

    Pinning matters where the bytes are stored under an ETag read earlier (the build's listing):
    an object replaced since raises ``ObjectChangedError`` instead of answering new bytes that
    would be recorded as the old version.
    """
    # Listings answer ETags in quotes, which the build strips; If-Match wants them back.
    condition = {"IfMatch": '"' + etag.strip('"') + '"'} if etag is not None else {}
    try:
        with translate_errors(bucket, keep=_MISSING_CODES | _CHANGED_CODES):
            body: bytes = client.get_object(Bucket=bucket, Key=key, **condition)["Body"].read()
            return body
    except ClientError as exc:
        if _code(exc) in _CHANGED_CODES:
            raise ObjectChangedError(f"{key!r} no longer has ETag {etag}") from exc
        raise


def head(client: S3Client, *, bucket: str, key: str) -> tuple[S3Object, str | None] | None:
    """The object as it is now and its version id (None: unversioned), or None when absent."""
    try:
        with translate_errors(bucket):
            answer = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise
    etag = str(answer["ETag"]).strip('"')
    found = S3Object(
        key, folder_of(key), etag, int(answer.get("ContentLength", 0)), _modified(answer)
    )
    return found, answer.get("VersionId")


def get_range(
    client: S3Client, *, bucket: str, key: str, start: int, end: int, etag: str | None = None
) -> tuple[bytes, int]:
    """Bytes ``[start, end)`` of the object (fewer at its end) and the object's total size;
    with ``etag``, only if the object still has it (``ObjectChangedError`` otherwise)."""
    condition = {"IfMatch": '"' + etag.strip('"') + '"'} if etag is not None else {}
    with translate_errors(bucket):
        try:
            response = client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **condition
            )
        except ClientError as exc:
            if _code(exc) in _CHANGED_CODES:
                raise ObjectChangedError(f"{key!r} no longer has ETag {etag}") from exc
            if _code(exc) != "InvalidRange" or start > 0:
                raise
            return b"", 0  # S3 refuses any range of an empty object
        body: bytes = response["Body"].read()
        total = response.get("ContentRange", "").rpartition("/")[2]
        return body, int(total) if total.isdigit() else len(body)


def get_bytes_if_present(client: S3Client, *, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when there is no such key."""
    try:
        return get_bytes(client, bucket=bucket, key=key)
    except Exception as exc:
        if is_missing(exc):
            return None
        raise


def get_tagged(client: S3Client, *, bucket: str, key: str) -> tuple[bytes, str] | None:
    """The object's bytes and ETag (for a later conditional write), or None when absent."""
    try:
        with translate_errors(bucket):
            answer = client.get_object(Bucket=bucket, Key=key)
            return answer["Body"].read(), answer["ETag"]
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


@dataclass(frozen=True)
class Unchanged:
    """The object still has the ETag asked about (S3 answered 304 Not Modified)."""


UNCHANGED = Unchanged()


def get_if_changed(
    client: S3Client, *, bucket: str, key: str, etag: str | None
) -> tuple[bytes, str] | Unchanged | None:
    """The object's bytes and ETag unless it still has ``etag`` (If-None-Match; None: always),
    ``UNCHANGED`` if it does, None when absent. A check that finds nothing new transfers no
    body: what lets a server look at a small object every few seconds."""
    condition = {} if etag is None else {"IfNoneMatch": etag}
    try:
        with translate_errors(bucket, keep=_MISSING_CODES | _NOT_MODIFIED_CODES):
            answer = client.get_object(Bucket=bucket, Key=key, **condition)
            return answer["Body"].read(), answer["ETag"]
    except ClientError as exc:
        if _code(exc) in _NOT_MODIFIED_CODES:
            return UNCHANGED
        if is_missing(exc):
            return None
        raise


def put_bytes(client: S3Client, *, bucket: str, key: str, data: bytes, content_type: str) -> None:
    with translate_errors(bucket):
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def put_buffers(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    parts: list[bytes | memoryview],
    content_type: str,
    part_bytes: int,
) -> None:
    """Upload the concatenation of ``parts`` without joining them: one PUT when small, else a
    multipart upload read from the buffers as it goes (an object of any size, up to S3's 5 TB)."""
    size = sum(len(part) for part in parts)
    if size <= part_bytes:
        put_bytes(client, bucket=bucket, key=key, data=b"".join(parts), content_type=content_type)
        return
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes)
    with translate_errors(bucket):
        client.upload_fileobj(
            _Concatenation(parts),
            bucket,
            key,
            ExtraArgs={"ContentType": content_type},
            Config=config,
        )


class _Concatenation(io.RawIOBase):
    """A read-only stream over several buffers, one after the other."""

    def __init__(self, parts: list[bytes | memoryview]) -> None:
        self._parts = [memoryview(part).cast("B") for part in parts]
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target) and self._parts:
            head = self._parts[0]
            size = min(len(head) - self._at, len(target) - filled)
            target[filled : filled + size] = head[self._at : self._at + size]
            filled += size
            self._at += size
            if self._at == len(head):
                self._parts.pop(0)
                self._at = 0
        return filled


def put_if(
    client: S3Client, *, bucket: str, key: str, data: bytes, content_type: str, etag: str | None
) -> str | None:
    """Write only if the object still has ``etag`` (``None``: only if there is no object yet).

    S3 checks the condition atomically (If-Match / If-None-Match), so of two writers racing on
    one key exactly one wins. Returns the new ETag, or None when the condition did not hold.
    """
    condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
    try:
        with translate_errors(bucket, keep=_CONDITION_CODES):
            answer = client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, **condition
            )
    except ClientError:
        return None
    return str(answer["ETag"])


def create(client: S3Client, *, bucket: str, key: str, data: bytes, content_type: str) -> bool:
    """Create ``key`` unless it exists (If-None-Match: *); False when it already did.

    Unlike ``put_if``, only a 412 is a lost race: a 409 (another conditional write in flight)
    is raised, since the winner's object may not be readable yet.
    """
    try:
        client.put_object(
            Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*"
        )
    except ClientError as exc:
        if _code(exc) in {"PreconditionFailed", "412"}:
            return False
        with translate_errors(bucket):
            raise
    return True


def delete_if(client: S3Client, *, bucket: str, key: str, etag: str) -> bool:
    """Delete the object only if it still has ``etag``; False when it changed or is gone."""
    try:
        with translate_errors(bucket, keep=_CONDITION_CODES):
            client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError:
        return False
    return True


def delete_keys(client: S3Client, *, bucket: str, keys: list[str]) -> None:
    with translate_errors(bucket):
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def presign_get(client: S3Client, *, bucket: str, key: str, expires: int) -> str:
    """A SigV4 GET URL, computed locally: no request goes to S3."""
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
    )
    return url


def public_url(client: S3Client, *, bucket: str, key: str) -> str:
    """The unsigned URL of an object in a public bucket, derived from a presigned one."""
    return presign_get(client, bucket=bucket, key=key, expires=1).split("?", 1)[0]
