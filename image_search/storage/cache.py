"""This process's local copy of a build's files: fetched once, reused until the build changes."""

from __future__ import annotations

from pathlib import Path

from image_search.files import atomic_path
from image_search.storage import s3


def cached(client: s3.S3Client, *, bucket: str, key: str, path: Path) -> Path:
    """``path``, downloading ``key`` to it first unless an earlier call already did."""
    if path.is_file():
        return path
    data = s3.get_bytes(client, bucket=bucket, key=key)
    with atomic_path(path) as partial:
        partial.write_bytes(data)
    return path
