"""This process's local copy of a build's files: fetched once, reused until the build changes.

Files come down as parallel ranged GETs, several files at once, each range written straight to
its place in the file (no whole file in memory), and appear under their name only when complete.
The first GET of each file asks for its first part, which also tells the size: small files take
one request, with no HEAD before it. Each part is hashed as it arrives, so the files' checksums
(storage/checksum.py) cost no second read.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from image_search.files import atomic_path
from image_search.storage import checksum, s3

# AWS's guidance for parallel ranged GETs: 8-16 MB parts, one connection each. The service's
# client keeps 10 connections (storage/s3.py), so more workers would only queue. A part is also
# what a checksum hashes at a time.
PART_BYTES = checksum.PART_BYTES
WORKERS = 10


@dataclass
class Fetched:
    bytes: int = 0  # downloaded by this call
    checksums: dict[str, str] = field(default_factory=dict)  # key → checksum, for those asked


def cached(client: s3.S3Client, *, bucket: str, key: str, path: Path) -> Path:
    """``path``, downloading ``key`` to it first unless an earlier call already did."""
    fetch(client, bucket=bucket, files={key: path})
    return path


def fetch(
    client: s3.S3Client, *, bucket: str, files: dict[str, Path], checksums: Collection[str] = ()
) -> Fetched:
    """Download every ``key → path`` whose path does not exist yet; the checksum of each key in
    ``checksums``, of the bytes it now holds locally (hashed from disk if it was there before)."""
    missing = {key: path for key, path in files.items() if not path.is_file()}
    fetched = Fetched()
    if missing:
        with ExitStack() as stack:
            partials = {
                key: stack.enter_context(atomic_path(path)) for key, path in missing.items()
            }
            pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="fetch")
            try:
                fetched = _download(client, bucket, partials, pool, checksums)
            finally:
                # On an error, drop the parts not started and wait for the rest before the
                # partial files are removed.
                pool.shutdown(wait=True, cancel_futures=True)
    for key in checksums:
        if key not in fetched.checksums:
            fetched.checksums[key] = checksum.of_file(files[key])
    return fetched


def _download(
    client: s3.S3Client,
    bucket: str,
    partials: dict[str, Path],
    pool: ThreadPoolExecutor,
    checksums: Collection[str],
) -> Fetched:
    firsts = {
        key: pool.submit(_part, client, bucket, key, path, 0, key in checksums)
        for key, path in partials.items()
    }
    parts: dict[str, list[Future[tuple[int, bytes]]]] = {}
    fetched = Fetched()
    for key, first in firsts.items():
        size, _ = first.result()
        fetched.bytes += size
        parts[key] = [first] + [
            pool.submit(_part, client, bucket, key, partials[key], start, key in checksums)
            for start in range(PART_BYTES, size, PART_BYTES)
        ]
    for key, futures in parts.items():
        digests = [future.result()[1] for future in futures]
        if key in checksums:
            fetched.checksums[key] = checksum.combine(digests)
    return fetched


def _part(
    client: s3.S3Client, bucket: str, key: str, path: Path, start: int, digest: bool
) -> tuple[int, bytes]:
    """Write one part in place; the object's size and, if asked, the part's digest."""
    data, size = s3.get_range(client, bucket=bucket, key=key, start=start, end=start + PART_BYTES)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, start)
    finally:
        os.close(fd)
    return size, checksum.part_digest(data) if digest else b""
