"""Publishing a segment: its files, then the pointer with If-Match, retried when another writer won.

The pointer is the one serialisation point between ingests and builds. A segment is added to it
only if it is still the pointer the segment was made against (If-Match on its ETag), so two
writers never lose each other's work: the loser reads the pointer again and retries. A loser
that passes ``refresh`` makes its segment again against the new pointer first (ingest looks at
its objects again, so what it publishes is never older than what another writer published in
between); without it, the same segment is appended to the new pointer as it is.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from image_search.artefacts.loader import read_tagged_pointer, write_pointer
from image_search.artefacts.location import IndexLocation, new_segment_id
from image_search.artefacts.manifest import SEGMENT_VECTORS_FILE, Pointer
from image_search.artefacts.segments import Segment, vectors_file
from image_search.artefacts.vector_file import check_vectors
from image_search.errors import IndexNotReadyError, PublishConflictError
from image_search.model.vectors import Vectors
from image_search.storage import checksum, s3

LOG = logging.getLogger(__name__)

Tagged = tuple[Pointer, str]  # a pointer and the ETag it was read with
# Makes the segment again against a newer pointer; None: nothing is left to publish.
Refresh = Callable[[Pointer], tuple[Segment, Vectors] | None]
ATTEMPTS = 20
BACKOFF_SECONDS = 0.05


def current(where: IndexLocation) -> Tagged:
    """The pointer and its ETag; a segment needs a build to apply on."""
    tagged = read_tagged_pointer(where)
    if tagged is None:
        raise IndexNotReadyError(
            f"no index at s3://{where.bucket}/{where.pointer_key} yet: the first build indexes "
            "every image, segments apply on a build"
        )
    return tagged


def publish_segment(
    where: IndexLocation,
    segment: Segment,
    vectors: Vectors,
    *,
    based_on: Tagged | None = None,
    refresh: Refresh | None = None,
    attempts: int = ATTEMPTS,
) -> Pointer:
    """Upload ``segment`` and its ``vectors``, then append it to the pointer ``based_on`` (by
    default the pointer now) only if that is still the pointer; the pointer written.

    On a lost race the pointer is read again and, with ``refresh``, the segment made again
    against it (files of a segment never named are deleted). ``PublishConflictError`` after
    ``attempts`` lost races in a row; ``IndexNotReadyError`` when there is no build yet.
    """
    tagged = based_on or current(where)
    segment = _upload(where, segment, vectors)
    for attempt in range(1, attempts + 1):
        pointer, etag = tagged
        updated = pointer.model_copy(
            update={"segments": [*(pointer.segments or []), segment.ref(where)]}
        )
        if write_pointer(where, updated, etag=etag) is not None:
            LOG.info(
                "published segment %s on build %s (%d adds, %d deletes)",
                segment.segment_id,
                pointer.build_id,
                len(segment.items),
                len(segment.deletes),
            )
            return updated
        time.sleep(
            random.uniform(0, BACKOFF_SECONDS * attempt)
        )  # jitter, so racing writers spread out
        tagged = current(where)
        if refresh is None:
            continue
        _delete(where, segment)
        redone = refresh(tagged[0])
        if redone is None:
            return tagged[0]
        segment, vectors = redone
        segment = _upload(
            where, segment.model_copy(update={"segment_id": new_segment_id()}), vectors
        )
    _delete(where, segment)
    raise PublishConflictError(
        f"{where.pointer_key} changed {attempts} times in a row while publishing a segment: "
        "its events are delivered again"
    )


def _upload(where: IndexLocation, segment: Segment, vectors: Vectors) -> Segment:
    """Write ``vectors.npy``, then ``segment.json`` (once: If-None-Match); the segment with the
    vectors' checksum."""
    check_vectors(vectors, rows=len(segment.items), dim=segment.dim)  # raises: a bug upstream
    data = vectors_file(vectors, dim=segment.dim)
    segment = segment.model_copy(
        update={"checksums": {**segment.checksums, SEGMENT_VECTORS_FILE: checksum.of_bytes(data)}}
    )
    segment.check()
    s3.put_bytes(
        where.client,
        bucket=where.bucket,
        key=where.segment_vectors_key(segment.segment_id),
        data=data,
        content_type="application/octet-stream",
    )
    created = s3.create(
        where.client,
        bucket=where.bucket,
        key=where.segment_key(segment.segment_id),
        data=segment.model_dump_json().encode(),
        content_type="application/json",
    )
    if not created:  # ids are random: only a writer reusing an id gets here
        raise PublishConflictError(f"segment {segment.segment_id} exists already")
    return segment


def _delete(where: IndexLocation, segment: Segment) -> None:
    keys = [where.segment_key(segment.segment_id), where.segment_vectors_key(segment.segment_id)]
    s3.delete_keys(where.client, bucket=where.bucket, keys=keys)
