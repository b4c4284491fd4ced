"""Deleting builds that are no longer served, and nothing else."""

from __future__ import annotations

import logging

from image_search.storage import s3
from image_search.storage.layout import builds_prefix, is_build_id

LOG = logging.getLogger(__name__)


def prune(client: s3.S3Client, *, bucket: str, index_prefix: str, keep: int, current: str) -> None:
    """Keep ``current`` and the ``keep - 1`` builds before it; delete the older ones.

    Only folders named like a build id (``layout.new_build_id``) are ever deleted, so objects a
    person stored under ``builds/`` survive. Builds newer than ``current`` are left alone: they
    may belong to a builder still uploading, or have been published after ``current``.
    """
    prefix = builds_prefix(index_prefix)
    by_build: dict[str, list[str]] = {}
    for obj in s3.list_objects(client, bucket=bucket, prefix=prefix):
        build_id, sep, _ = obj["Key"][len(prefix) :].partition("/")
        if sep and is_build_id(build_id):
            by_build.setdefault(build_id, []).append(obj["Key"])
    older = sorted((b for b in by_build if b < current), reverse=True)
    stale = older[max(keep - 1, 0) :]
    doomed = [key for build_id in stale for key in by_build[build_id]]
    if doomed:
        s3.delete_keys(client, bucket=bucket, keys=doomed)
        LOG.info("pruned %d old build(s)", len(stale))
