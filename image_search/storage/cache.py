"""This process's local copy of a build's files: fetched once, reused until the build changes.

Files come down as parallel ranged GETs, several files at once, each range written straight to
its place in the file (no whole file in memory), and appear under their name only when complete.
The first GET of each file asks for its first part, which also tells the size: small files take
one request, with no HEAD before it.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from image_search.files import atomic_path
from image_search.storage import s3

# AWS's guidance for parallel ranged GETs: 8-16 MB parts, one connection each. The service's
# client keeps 10 connections (storage/s3.py), so more workers would only queue.
PART_BYTES = 8 * 2**20
WORKERS = 10


def cached(client: s3.S3Client, *, bucket: str, key: str, path: Path) -> Path:
    """``path``, downloading ``key`` to it first unless an earlier call already did."""
    fetch(client, bucket=bucket, files={key: path})
    return path


def fetch(client: s3.S3Client, *, bucket: str, files: dict[str, Path]) -> int:
    """Download every ``key → path`` whose path does not exist yet; the bytes downloaded."""
    missing = {key: path for key, path in files.items() if not path.is_file()}
    if not missing:
        return 0
    with ExitStack() as stack:
        partials = {key: stack.enter_context(atomic_path(path)) for key, path in missing.items()}
        pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="fetch")
        try:
            return _download(client, bucket, partials, pool)
        finally:
            # On an error, drop the parts not started and wait for the rest before the partial
            # files are removed.
            pool.shutdown(wait=True, cancel_futures=True)


def _download(
    client: s3.S3Client, bucket: str, partials: dict[str, Path], pool: ThreadPoolExecutor
) -> int:
    firsts = {
        key: pool.submit(_part, client, bucket, key, path, 0) for key, path in partials.items()
    }
    rest: list[Future[int]] = []
    total = 0
    for key, first in firsts.items():
        size = first.result()
        total += size
        rest += [
            pool.submit(_part, client, bucket, key, partials[key], start)
            for start in range(PART_BYTES, size, PART_BYTES)
        ]
    for part in rest:
        part.result()
    return total


def _part(client: s3.S3Client, bucket: str, key: str, path: Path, start: int) -> int:
    data, size = s3.get_range(client, bucket=bucket, key=key, start=start, end=start + PART_BYTES)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, start)
    finally:
        os.close(fd)
    return size
