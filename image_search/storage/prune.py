"""Deleting builds that are no longer served."""

from __future__ import annotations

import logging

from image_search.storage import s3
from image_search.storage.layout import builds_prefix

LOG = logging.getLogger(__name__)


def prune(client: s3.S3Client, *, bucket: str, index_prefix: str, keep: int, current: str) -> None:
    """Delete all but the newest ``keep`` builds; never the current one."""
    prefix = builds_prefix(index_prefix)
    by_build: dict[str, list[str]] = {}
    for obj in s3.list_objects(client, bucket=bucket, prefix=prefix):
        build_id = obj["Key"][len(prefix) :].split("/", 1)[0]
        by_build.setdefault(build_id, []).append(obj["Key"])
    stale = [b for b in sorted(by_build, reverse=True)[keep:] if b != current]
    doomed = [key for build_id in stale for key in by_build[build_id]]
    if doomed:
        s3.delete_keys(client, bucket=bucket, keys=doomed)
        LOG.info("pruned %d old build(s)", len(stale))
