"""Segments: images added and removed since the build, published in seconds by ingest.

::

    <prefix>segments/<segment_id>/vectors.npy    float32 [adds, dim], unit rows, in items' order
    <prefix>segments/<segment_id>/segment.json   this document, written after the vectors

``current.json`` lists the build plus its segments in the order they apply (``Pointer.segments``).
The view they serve: the build's rows 0..N-1, then each segment's adds numbered on in pointer
order. Applying a segment removes every key in its ``deletes`` from the view (a build row or an
earlier segment's), then adds its ``items``; an overwrite lists its key in both. A key added
twice counts once, as the latest add.

A segment is data from S3 like any build: its id is checked before a key or a path is made from
it, the document against the reference the pointer holds, and its vectors like a shard's result
(artefacts/vector_file.py) before anything serves or compacts them.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, Field

from image_search.artefacts import vector_file
from image_search.artefacts.location import IndexLocation, is_build_id, is_segment_id
from image_search.artefacts.manifest import SEGMENT_VECTORS_FILE, Item, SegmentRef, Skipped
from image_search.artefacts.versions import Versioned
from image_search.errors import IndexMismatchError
from image_search.model.vectors import Vectors
from image_search.storage import checksum, s3

__all__ = ["Applied", "Segment", "SegmentRef", "load_segment", "read_segment", "read_vectors"]


class Applied(BaseModel):
    """An object's state a segment folded in: what ingest saw when it looked (HEAD), and the
    event's ``sequencer`` when S3 sent one. Later events for the key at or below that sequencer
    are stale; the same state seen again changes nothing."""

    key: str
    etag: str | None = None  # None: the object was gone
    version_id: str | None = None
    sequencer: str | None = None


class Segment(Versioned):
    """``segment.json``: one ingest batch's adds and deletes on ``base_build_id``."""

    DOCUMENT: ClassVar[str] = "segment.json"

    segment_id: str
    base_build_id: str
    model: str
    dim: int = Field(ge=1)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    items: list[Item] = []  # the adds, in vectors.npy's row order
    deletes: list[str] = []
    skipped: list[Skipped] = []
    applied: list[Applied] = []
    checksums: dict[str, str] = {}  # file name → storage/checksum.py's checksum

    def ref(self, where: IndexLocation) -> SegmentRef:
        """What the pointer records of this segment."""
        return SegmentRef(
            segment_id=self.segment_id,
            key=where.segment_key(self.segment_id),
            adds=len(self.items),
            deletes=len(self.deletes),
        )

    def check(self, *, model: str | None = None, dim: int | None = None) -> None:
        """Refuse a segment that is not one ingest could have written, or that was made for
        another model or width than the reader's."""
        problem = self._problem(model=model, dim=dim)
        if problem:
            raise IndexMismatchError(f"segment {self.segment_id!r}: {problem}")

    def _problem(self, *, model: str | None, dim: int | None) -> str | None:
        if not is_segment_id(self.segment_id):
            return "not a segment id"
        if not is_build_id(self.base_build_id):
            return f"base {self.base_build_id!r} is not a build id"
        if model is not None and self.model != model:
            return f"embedded with model {self.model!r}, not {model!r}"
        if dim is not None and self.dim != dim:
            return f"vectors of width {self.dim}, not {dim}"
        keys = [item.key for item in self.items]
        if len(set(keys)) != len(keys) or len(set(self.deletes)) != len(self.deletes):
            return "it adds or deletes a key twice"
        if any(not item.folder or item.folder != s3.folder_of(item.key) for item in self.items):
            return "an item's folder is not its key's first segment"
        if SEGMENT_VECTORS_FILE not in self.checksums:
            return f"no checksum of {SEGMENT_VECTORS_FILE}"
        return None


def read_segment(
    where: IndexLocation, ref: SegmentRef, *, model: str | None = None, dim: int | None = None
) -> Segment:
    """The segment ``ref`` names, checked against ``ref`` (and ``model``/``dim`` when given)."""
    if ref.key != where.segment_key(ref.segment_id):  # segment_key refuses a bad id first
        raise IndexMismatchError(f"segment {ref.segment_id!r}: its key {ref.key!r} is not its own")
    data = s3.get_bytes_if_present(where.client, bucket=where.bucket, key=ref.key)
    if data is None:
        raise IndexMismatchError(f"segment {ref.segment_id!r}: {ref.key} is missing")
    try:
        segment = Segment.model_validate_json(data)
    except ValueError as exc:  # pydantic's ValidationError; NewerFormatError is not one
        raise IndexMismatchError(f"segment {ref.segment_id!r}: unreadable ({exc})") from exc
    if segment.segment_id != ref.segment_id:
        raise IndexMismatchError(
            f"segment {ref.segment_id!r}: its document names {segment.segment_id!r}"
        )
    if (len(segment.items), len(segment.deletes)) != (ref.adds, ref.deletes):
        raise IndexMismatchError(
            f"segment {ref.segment_id!r}: {len(segment.items)} adds and {len(segment.deletes)} "
            f"deletes, the pointer says {ref.adds} and {ref.deletes}"
        )
    segment.check(model=model, dim=dim)
    return segment


def read_vectors(where: IndexLocation, segment: Segment) -> Vectors:
    """The segment's vectors: its file's checksum as recorded, one finite unit row of the
    segment's width per item."""
    key = where.segment_vectors_key(segment.segment_id)
    try:
        vectors, data = vector_file.read_npy(
            where.client, bucket=where.bucket, key=key, rows=len(segment.items)
        )
        if checksum.of_bytes(data) != segment.checksums.get(SEGMENT_VECTORS_FILE):
            raise vector_file.BadVectorsError(f"{SEGMENT_VECTORS_FILE} fails its checksum")
        vector_file.check_vectors(vectors, rows=len(segment.items), dim=segment.dim)
    except vector_file.BadVectorsError as exc:
        raise IndexMismatchError(f"segment {segment.segment_id!r}: {exc}") from exc
    if not segment.items:  # deletes only: whatever shape of nothing the file holds
        return np.zeros((0, segment.dim), dtype=np.float32)
    return vectors


def load_segment(
    where: IndexLocation, ref: SegmentRef, *, model: str | None = None, dim: int | None = None
) -> tuple[Segment, Vectors]:
    """``read_segment`` then ``read_vectors``: a segment ready to serve or compact."""
    segment = read_segment(where, ref, model=model, dim=dim)
    return segment, read_vectors(where, segment)


def vectors_file(vectors: Vectors, *, dim: int) -> bytes:
    """``vectors.npy``'s bytes (an empty segment still has a file, of shape (0, dim))."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim))
    return buffer.getvalue()
