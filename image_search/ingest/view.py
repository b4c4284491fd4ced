"""What the published index holds for each key, as ingest compares it with what S3 holds now.

The pointer's build plus its segments in order give each key's ETag in the served view, the
ETags known not to decode, and the last sequencer applied. Ingest publishes only the difference
between that and a HEAD of the key, which makes it idempotent: an event delivered twice, or
late, or after a build already indexed its change, finds nothing to do.

The build's metadata and the segments are immutable once named, so a process keeps them by id
(a warm Lambda or the long-running consumer reads each once).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import Metadata, Pointer, SegmentRef
from image_search.artefacts.segments import Segment, read_segment
from image_search.errors import IndexMismatchError
from image_search.ingest.events import later
from image_search.storage import s3

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Base:
    """A build's keys as ingest needs them."""

    build_id: str
    model: str
    dim: int
    etags: dict[str, str]
    broken: dict[str, str]  # key → ETag whose bytes do not decode (skipped, cause "image")


@dataclass
class View:
    """The served view of one pointer, key by key."""

    pointer: Pointer
    model: str
    dim: int
    etags: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    sequencers: dict[str, str] = field(default_factory=dict)

    def apply(self, segment: Segment) -> None:
        for key in segment.deletes:
            self.etags.pop(key, None)
        for item in segment.items:
            self.etags[item.key] = item.etag
            self.broken.pop(item.key, None)
        for skipped in segment.skipped:
            if skipped.cause == "image" and skipped.etag is not None:
                self.broken[skipped.key] = skipped.etag
        for applied in segment.applied:
            newest = later(self.sequencers.get(applied.key), applied.sequencer)
            if newest is not None:
                self.sequencers[applied.key] = newest


class ViewCache:
    """Builds and segments read once per process, by id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: Base | None = None  # one build at a time: the pointer names one
        self._segments: dict[str, Segment] = {}

    def view(self, where: IndexLocation, pointer: Pointer) -> View:
        base = self._base_of(where, pointer)
        view = View(pointer, base.model, base.dim, dict(base.etags), dict(base.broken))
        refs = pointer.segments or []
        for ref in refs:
            segment = self._segment(where, ref, base)
            if segment is not None:
                view.apply(segment)
        with self._lock:  # segments no longer named are compacted: forget them
            named = {ref.segment_id for ref in refs}
            self._segments = {k: v for k, v in self._segments.items() if k in named}
        return view

    def _base_of(self, where: IndexLocation, pointer: Pointer) -> Base:
        with self._lock:
            if self._base is not None and self._base.build_id == pointer.build_id:
                return self._base
        data = s3.get_bytes(where.client, bucket=where.bucket, key=pointer.metadata_key)
        try:
            metadata = Metadata.model_validate_json(data)
        except ValueError as exc:
            raise IndexMismatchError(
                f"build {pointer.build_id}: its metadata is unreadable ({exc})"
            ) from exc
        base = Base(
            build_id=metadata.build_id,
            model=metadata.model,
            dim=metadata.dim,
            etags={item.key: item.etag for item in metadata.items},
            broken={
                s.key: s.etag for s in metadata.skipped if s.cause == "image" and s.etag is not None
            },
        )
        with self._lock:
            self._base = base
        return base

    def _segment(self, where: IndexLocation, ref: SegmentRef, base: Base) -> Segment | None:
        with self._lock:
            if ref.segment_id in self._segments:
                return self._segments[ref.segment_id]
        try:
            segment = read_segment(where, ref, model=base.model, dim=base.dim)
        except IndexMismatchError as exc:
            # Served without it too; its keys are looked at again when their events come.
            LOG.warning("ignoring %s", exc)
            return None
        with self._lock:
            self._segments[ref.segment_id] = segment
        return segment
