"""The build ``current.json`` names, and its segments, read and checked before a new build
reuses them.

A previous build the service could not load (an unreadable pointer, a missing or corrupt
metadata, index or embeddings file) must not stop the next build: it is reported in one warning
and the new build starts from scratch, which also replaces it. A damaged segment is left out the
same way: the new build lists the bucket, so whatever it held is embedded again.

Segments are folded in (compaction): their adds are vectors the build reuses like the build's
own, keyed by key and ETag, so nothing ingest embedded is embedded again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from image_search.artefacts.loader import EMPTY_VECTORS, load_vectors
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import ListedItem, Listing, Pointer, Skipped
from image_search.artefacts.segments import Segment, load_segment
from image_search.errors import IndexMismatchError, NewerFormatError
from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import s3

LOG = logging.getLogger(__name__)

# How a damaged file shows: missing (ClientError), not JSON/npy/FAISS (ValueError, which
# includes pydantic's ValidationError, RuntimeError from FAISS, EOFError, OSError), or files
# that disagree (IndexMismatchError).
DAMAGE = (ClientError, ValueError, RuntimeError, EOFError, OSError, IndexMismatchError)


@dataclass(frozen=True)
class Previous:
    """What the last build left: the pointer's ETag (for the conditional publish), and its
    pointer, metadata and vectors when they are usable."""

    pointer_etag: str | None = None
    pointer: Pointer | None = None
    metadata: Listing | None = None  # without the photo fields (photos.npy has them)
    vectors: Vectors = field(default_factory=lambda: EMPTY_VECTORS)
    # The pointer's segments that passed their checks, in order, with their vectors.
    segments: list[tuple[Segment, Vectors]] = field(default_factory=list)

    @property
    def pool(self) -> list[ListedItem]:
        """Every item whose vector can be reused: the build's rows, then each segment's adds
        numbered on in pointer order (the served view's numbering, before deletes)."""
        items = list(self.metadata.items) if self.metadata is not None else []
        return items + [item for segment, _ in self.segments for item in segment.items]

    @property
    def undecodable(self) -> list[Skipped]:
        """What the build and its segments found undecodable (the latest word on each key)."""
        found = self.metadata.skipped if self.metadata is not None else []
        latest = {s.key: s for s in found if s.cause == "image"}
        for segment, _ in self.segments:
            latest.update({s.key: s for s in segment.skipped if s.cause == "image"})
        return list(latest.values())


def read_previous(where: IndexLocation) -> Previous:
    found = s3.get_tagged(where.client, bucket=where.bucket, key=where.pointer_key)
    if found is None:
        return Previous()
    data, etag = found
    try:
        pointer = Pointer.model_validate_json(data)
        metadata, vectors = _load_checked(where, pointer=pointer)
    except NewerFormatError:
        # Not damage: a newer version published it. Rebuilding from scratch would replace it
        # with a build in an older format; this build stops instead.
        raise
    except DAMAGE as exc:
        LOG.warning(
            "the current build is unusable (%s: %s); building everything from scratch",
            type(exc).__name__,
            _first_line(exc),
        )
        return Previous(pointer_etag=etag)
    segments = _segments(where, pointer, metadata=metadata)
    return Previous(
        pointer_etag=etag, pointer=pointer, metadata=metadata, vectors=vectors, segments=segments
    )


def _segments(
    where: IndexLocation, pointer: Pointer, *, metadata: Listing
) -> list[tuple[Segment, Vectors]]:
    loaded = []
    for ref in pointer.segments or []:
        try:
            loaded.append(load_segment(where, ref, model=metadata.model, dim=metadata.dim))
        except NewerFormatError:
            raise  # as for the build: a newer version wrote it, this one stops
        except DAMAGE as exc:
            LOG.warning(
                "segment %s is left out (%s); the listing gives its images back",
                ref.segment_id,
                _first_line(exc),
            )
    return loaded


def _load_checked(where: IndexLocation, *, pointer: Pointer) -> tuple[Listing, Vectors]:
    """The build's metadata and vectors, after checking that its three files agree, as the
    service does when it loads them."""
    # Without the photo fields: the merge reads them from photos.npy (build/photos.py).
    metadata, vectors = load_vectors(where, pointer=pointer, document=Listing)
    data = s3.get_bytes(where.client, bucket=where.bucket, key=pointer.index_key)
    index = faiss_index.from_bytes(data)
    metadata.check(index_count=index.ntotal, index_dim=index.dim)
    return metadata, vectors


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
