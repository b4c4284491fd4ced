"""The build's near-duplicate pass: groups found over the new build's vectors, written beside it
before the pointer moves. A failure leaves the build without groups rather than unpublished."""

from __future__ import annotations

import logging
import time

from image_search.artefacts import duplicates
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import DuplicatesRef, Item
from image_search.index.duplicates import find_groups
from image_search.index.search_index import SearchIndex
from image_search.model.vectors import Vectors

LOG = logging.getLogger(__name__)


def publish_groups(
    where: IndexLocation,
    *,
    min_score: float,
    build_id: str,
    items: list[Item],
    vectors: Vectors,
    index: SearchIndex,
) -> DuplicatesRef | None:
    """Find the groups at ``min_score``, upload them; None when that failed."""
    started = time.monotonic()
    try:
        groups = find_groups(vectors, min_score=min_score, index=index)
    except (MemoryError, RuntimeError) as exc:  # RuntimeError: FAISS out of resources
        LOG.error("duplicates: the pass failed (%s); publishing the build without groups", exc)
        return None
    doc = duplicates.DuplicatesDoc(
        build_id=build_id,
        min_score=min_score,
        groups=[
            duplicates.GroupDoc(keys=[items[row].key for row in group.rows], edges=group.edges)
            for group in groups
        ],
    )
    key = where.duplicates_key(build_id)
    duplicates.write(where, key=key, doc=doc)
    LOG.info(
        "duplicates: %d groups at cosine >= %.3f in %.1f s",
        len(groups),
        min_score,
        time.monotonic() - started,
    )
    return DuplicatesRef(key=key, min_score=min_score, groups=len(groups))
