"""Deleting builds that are no longer served, and nothing else."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from image_search.artefacts.location import IndexLocation, is_build_id, is_segment_id
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


# An unnamed segment younger than this may be an ingest's between its files and its pointer
# write (a Lambda runs 15 minutes at most): deleting it would leave the pointer naming nothing.
SEGMENT_MIN_AGE_SECONDS = 3600.0


def prune_segments(where: IndexLocation, *, named: Collection[str], grace_seconds: float) -> None:
    """Delete the segments the pointer no longer names (folded into a build, or never published)
    that are older than ``grace_seconds`` and ``SEGMENT_MIN_AGE_SECONDS``: only folders under
    ``segments/`` named like a segment id."""
    prefix = where.segments_prefix
    cutoff = datetime.now(UTC) - timedelta(seconds=max(grace_seconds, SEGMENT_MIN_AGE_SECONDS))
    doomed: dict[str, list[str]] = {}
    for obj in s3.list_objects(where.client, bucket=where.bucket, prefix=prefix):
        segment_id, sep, _ = obj["Key"][len(prefix) :].partition("/")
        if sep and is_segment_id(segment_id) and segment_id not in named:
            if made_at(segment_id) < cutoff:
                doomed.setdefault(segment_id, []).append(obj["Key"])
    keys = [key for folder in doomed.values() for key in folder]
    if keys:
        s3.delete_keys(where.client, bucket=where.bucket, keys=keys)
        LOG.info("pruned %d segment(s) no longer named", len(doomed))


def made_at(segment_id: str) -> datetime:
    """When a build or segment id was made (ids start with their UTC time)."""
    return datetime.strptime(segment_id[:22], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
