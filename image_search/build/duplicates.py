"""The build's near-duplicate pass: groups found over the new build's vectors, written beside it
before the pointer moves. A failure leaves the build without groups rather than unpublished."""

from __future__ import annotations

import logging
import time

from image_search.config import Settings
from image_search.index.duplicates import find_groups
from image_search.index.faiss_index import Index
from image_search.model.vectors import Vectors
from image_search.storage import duplicates, s3
from image_search.storage.manifest import DuplicatesRef, Item

LOG = logging.getLogger(__name__)


def publish_groups(
    settings: Settings,
    *,
    client: s3.S3Client,
    build_id: str,
    items: list[Item],
    vectors: Vectors,
    index: Index,
) -> DuplicatesRef | None:
    """Find the groups at ``settings.duplicate_score``, upload them; None when that failed."""
    started = time.monotonic()
    try:
        groups = find_groups(vectors, min_score=settings.duplicate_score, index=index)
    except (MemoryError, RuntimeError) as exc:  # RuntimeError: FAISS out of resources
        LOG.error("duplicates: the pass failed (%s); publishing the build without groups", exc)
        return None
    doc = duplicates.DuplicatesDoc(
        build_id=build_id,
        min_score=settings.duplicate_score,
        groups=[
            duplicates.GroupDoc(keys=[items[row].key for row in group.rows], edges=group.edges)
            for group in groups
        ],
    )
    key = duplicates.duplicates_key(settings.index_prefix, build_id)
    duplicates.write(client, bucket=settings.bucket, key=key, doc=doc)
    LOG.info(
        "duplicates: %d groups at cosine >= %.3f in %.1f s",
        len(groups),
        settings.duplicate_score,
        time.monotonic() - started,
    )
    return DuplicatesRef(key=key, min_score=settings.duplicate_score, groups=len(groups))
