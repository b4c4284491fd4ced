"""Publishing a build: every file under its own folder first, the pointer last, then pruning."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from image_search.artefacts.catalog import FILES as CATALOG_FILES
from image_search.artefacts.catalog import Catalog
from image_search.artefacts.loader import read_pointer, read_tagged_pointer, write_pointer
from image_search.artefacts.location import IndexLocation, beside
from image_search.artefacts.manifest import (
    CATALOG_FILE,
    RERANK_CODES_FILE,
    RERANK_FILE,
    Metadata,
    Pointer,
    SegmentRef,
)
from image_search.artefacts.photos import PhotoColumns, metadata_json
from image_search.artefacts.prune import prune, prune_segments
from image_search.errors import PublishConflictError
from image_search.index import ivf_pq
from image_search.index.search_index import Parts, SearchIndex, npy_parts
from image_search.model.vectors import Vectors
from image_search.storage import s3

LOG = logging.getLogger(__name__)

BINARY = "application/octet-stream"
# Files past this size go up as a multipart upload read straight from the arrays.
UPLOAD_PART_BYTES = 64 * 2**20
# The published names of the files an index kind needs beside its FAISS file.
SIDECAR_FILES = {ivf_pq.CODES: RERANK_CODES_FILE, ivf_pq.LAYOUT: RERANK_FILE}
# Lost races in a row a build's publish retries while only segments are added on its base.
CARRY_ATTEMPTS = 20
CARRY_BACKOFF_SECONDS = 0.05


def publish(
    where: IndexLocation,
    *,
    metadata: Metadata,
    index: SearchIndex,
    vectors: Vectors,
    keep_builds: int,
    pointer_etag: str | None,
    prune_grace_seconds: float = 0.0,
    base: Pointer | None = None,
    photos: PhotoColumns | None = None,
) -> Pointer:
    """Upload a build's files, then switch ``current.json`` to it, then prune old builds and
    the segments it folded in.

    If any upload fails the pointer still names the previous build, which stays intact.
    ``pointer_etag`` is the ETag of ``current.json`` when the build read it (None: there was
    none), ``base`` that pointer (its segments are the ones this build folded in). The pointer
    is only replaced if it is still that one, so a slower builder can never replace a newer
    build with an older one: it gets ``PublishConflictError`` and prunes nothing. The one
    exception: when ingest only added segments on ``base`` meanwhile, they are carried over
    onto this build and the write tried again (steady uploads must not stop every build).
    ``photos``: the items' photo fields as columns, in item order (the build's way: no object
    per item); without them, each item's own ``photo``.
    """
    pointer = where.pointer_for(metadata.build_id)
    catalog = Catalog.from_metadata(metadata, photos=photos)
    catalog_key = beside(pointer.index_key, CATALOG_FILE)
    pointer = pointer.model_copy(update={"catalog_key": catalog_key})
    assert pointer.embeddings_key is not None

    def put(key: str, parts: Parts, content_type: str = BINARY) -> None:
        s3.put_buffers(
            where.client,
            bucket=where.bucket,
            key=key,
            parts=parts,
            content_type=content_type,
            part_bytes=UPLOAD_PART_BYTES,
        )

    files = [pointer.embeddings_key, pointer.index_key, pointer.metadata_key]
    files += [beside(catalog_key, name) for name in CATALOG_FILES]
    if metadata.duplicates is not None:  # uploaded by the build beforehand
        files.append(metadata.duplicates.key)
    put(pointer.embeddings_key, npy_parts(np.ascontiguousarray(vectors, dtype=np.float32)))
    put(pointer.index_key, [index.serialised().data])
    sidecars = index.sidecars()
    for name in sidecars:
        key = beside(pointer.index_key, SIDECAR_FILES[name])
        files.append(key)
        put(key, sidecars[name])
    if sidecars:
        pointer = pointer.model_copy(update={"rerank_key": beside(pointer.index_key, RERANK_FILE)})
    for name, data in catalog.files().items():
        if name not in CATALOG_FILES:  # photos.npy: named by the pointer when there is one
            files.append(beside(catalog_key, name))
            pointer = pointer.model_copy(update={"photos_key": beside(catalog_key, name)})
        put(
            beside(catalog_key, name),
            [data],
            "application/json" if name == CATALOG_FILE else BINARY,
        )
    put(pointer.metadata_key, [metadata_json(metadata, photos)], "application/json")
    current, etag, carried = _named(where), pointer_etag, list[SegmentRef]()
    for attempt in range(1, CARRY_ATTEMPTS + 1):
        recent = recently_superseded(
            current, by=metadata.build_id, grace_seconds=prune_grace_seconds
        )
        pointer = pointer.model_copy(
            update={"superseded": recent or None, "segments": carried or None}
        )
        if write_pointer(where, pointer, etag=etag) is not None:
            break
        tagged = _tagged(where)
        if tagged is not None and tagged[0] == pointer:
            break  # ours: a retried write that had gone through answered 412
        more = _carried(base, tagged[0] if tagged is not None else None)
        if tagged is None or more is None or attempt == CARRY_ATTEMPTS:
            s3.delete_keys(where.client, bucket=where.bucket, keys=files)  # never published
            raise PublishConflictError(
                f"{where.pointer_key} changed while this build ran (another build published); "
                f"build {metadata.build_id} was not published: run the build again"
            )
        (current, etag), carried = tagged, more
        time.sleep(random.uniform(0, CARRY_BACKOFF_SECONDS * attempt))  # spread racing writers
    LOG.info(
        "published build %s (%d vectors, %d segment(s) carried over)",
        metadata.build_id,
        metadata.count,
        len(pointer.segments or []),
    )
    prune(where, keep=keep_builds, current=pointer.build_id, spared=set(recent))
    named = {ref.segment_id for ref in pointer.segments or []}
    prune_segments(where, named=named, grace_seconds=prune_grace_seconds)
    return pointer


def _carried(base: Pointer | None, now: Pointer | None) -> list[SegmentRef] | None:
    """The segments ingest published on ``base`` since the build read it, when ``now`` is
    ``base`` plus only those; None when the build changed (another build published)."""
    if base is None or now is None or now.build_id != base.build_id:
        return None
    folded = [ref.segment_id for ref in base.segments or []]
    named = now.segments or []
    if [ref.segment_id for ref in named[: len(folded)]] != folded:
        return None
    return named[len(folded) :]


def _tagged(where: IndexLocation) -> tuple[Pointer, str] | None:
    try:
        return read_tagged_pointer(where)
    except ValueError:
        return None


def recently_superseded(
    previous: Pointer | None, *, by: str, grace_seconds: float
) -> dict[str, datetime]:
    """The builds replaced less than ``grace_seconds`` ago once ``by`` replaces ``previous``.

    A server swaps builds only when it next checks the pointer (IMAGE_SEARCH_REFRESH_SECONDS), and
    ivf-pq's re-rank codes are fetched lazily while it serves: deleting a build it still serves
    would fail its queries until then.
    """
    if previous is None or grace_seconds <= 0:
        return {}
    now = datetime.now(UTC)
    since = now - timedelta(seconds=grace_seconds)
    recent = {b: t for b, t in (previous.superseded or {}).items() if t > since and b != by}
    if previous.build_id != by:
        recent[previous.build_id] = now
    return recent


def _named(where: IndexLocation) -> Pointer | None:
    """The pointer now in S3, or None when it is absent or unreadable."""
    try:
        return read_pointer(where)
    except ValueError:
        return None
