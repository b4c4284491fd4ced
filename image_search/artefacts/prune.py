"""Deleting builds that are no longer served, and nothing else."""

from __future__ import annotations

import logging
from collections.abc import Collection

from image_search.artefacts.location import IndexLocation, is_build_id
from image_search.storage import s3

LOG = logging.getLogger(__name__)


def prune(where: IndexLocation, *, keep: int, current: str, spared: Collection[str] = ()) -> None:
    """Keep ``current`` and the ``keep - 1`` builds before it, and the ``spared`` ones (replaced
    too recently: a server may still read their files); delete the older ones.

    Only folders named like a build id (``location.new_build_id``) are ever deleted, so objects a
    person stored under ``builds/`` survive. Builds newer than ``current`` are left alone: they
    may belong to a builder still uploading, or have been published after ``current``.
    """
    prefix = where.builds_prefix
    by_build: dict[str, list[str]] = {}
    for obj in s3.list_objects(where.client, bucket=where.bucket, prefix=prefix):
        build_id, sep, _ = obj["Key"][len(prefix) :].partition("/")
        if sep and is_build_id(build_id):
            by_build.setdefault(build_id, []).append(obj["Key"])
    older = sorted((b for b in by_build if b < current), reverse=True)
    stale = [b for b in older[max(keep - 1, 0) :] if b not in spared]
    doomed = [key for build_id in stale for key in by_build[build_id]]
    if doomed:
        s3.delete_keys(where.client, bucket=where.bucket, keys=doomed)
        LOG.info("pruned %d old build(s)", len(stale))
