"""What the service serves: a base build with its delta segments applied, as one set of rows.

Rows ``0 .. N-1`` are the base build's, in its order; each segment's adds continue the numbering
in the pointer's order, so a row keeps its number when later segments arrive (cursors rely on
it). Applying a segment deletes the keys it lists in ``deletes`` (a base row or an earlier
segment's), then adds its items; a key added again replaces its earlier row. A deleted row keeps
its number but is live nowhere: not in searches (index/overlay.py), ``rows``, counts, folders or
prefixes.

Segment rows are not in near-duplicate groups until the next build folds them into a base; a
deleted row leaves its groups at once (serve/duplicates.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np

from image_search.artefacts.catalog import Catalog
from image_search.artefacts.loader import LoadedBuild
from image_search.artefacts.manifest import BuildHeader, DuplicatesRef, Item
from image_search.artefacts.photo_parts import PhotoParts
from image_search.artefacts.photos import Photo, PhotoColumns
from image_search.artefacts.places import NO_ROWS, Place
from image_search.artefacts.segments import Segment
from image_search.artefacts.view_rows import Entries, Keys, LiveRows
from image_search.index.overlay import OverlayIndex
from image_search.index.prefixes import KeyOrder
from image_search.index.search_index import Rows
from image_search.model.vectors import Vectors


@dataclass(frozen=True)
class LoadedSegment:
    """A segment as served: its adds (with their vectors, in row order) and its deletes."""

    segment_id: str
    items: Sequence[Item]
    deletes: Sequence[str]
    vectors: Vectors

    @classmethod
    def of(cls, segment: Segment, vectors: Vectors) -> LoadedSegment:
        return cls(segment.segment_id, segment.items, segment.deletes, vectors)


class ViewCatalog:
    """The catalog of a view: a row's key and folder, a live key's row, live counts, places."""

    def __init__(
        self,
        base: Catalog,
        segments: Sequence[LoadedSegment] = (),
        *,
        after: ViewCatalog | None = None,
    ) -> None:
        """``base`` with ``segments`` applied, after those ``after`` (a view of the same base)
        applied: only the new segments' keys are looked up."""
        self.base = base
        n = len(base)
        before: tuple[str, ...] = () if after is None else after.segment_ids
        self.segment_ids: tuple[str, ...] = before + tuple(s.segment_id for s in segments)
        # Rows n, n + 1, …: every segment's adds in order; the live ones by key.
        self._items: list[Item] = [] if after is None else list(after._items)
        self._live: dict[str, int] = {} if after is None else dict(after._live)
        self._dead: set[int] = set() if after is None else set(after._dead)  # build rows
        # ends[c]: the first row after the first c segments' adds.
        self.ends: list[int] = [n] if after is None else list(after.ends)
        # Adds and deletes in segments: what a compaction would fold in.
        self.changes: int = 0 if after is None else after.changes
        for segment in segments:
            self._apply(segment)
        self.dead = np.array(sorted(self._dead), dtype=np.int64)
        self.extra_live = np.zeros(len(self._items), dtype=bool)
        live = np.fromiter(self._live.values(), dtype=np.int64, count=len(self._live))
        self.extra_live[live - n] = True
        self.items = Entries(self)
        self.keys = Keys(self)
        self.rows = LiveRows(self)

    def _apply(self, segment: LoadedSegment) -> None:
        n = len(self.base)
        for key in segment.deletes:
            self._kill(key)
        for item in segment.items:
            self._kill(item.key)
            self._live[item.key] = n + len(self._items)
            self._items.append(item)
        self.ends.append(n + len(self._items))
        self.changes += len(segment.items) + len(segment.deletes)

    def _kill(self, key: str) -> None:
        """Deletes ``key``'s live row, if it has one."""
        if self._live.pop(key, None) is not None:
            return
        row = self.base.row(key)
        if row is not None:
            self._dead.add(row)

    # ---- the base build's header -----------------------------------------------------------

    @property
    def header(self) -> BuildHeader:
        return self.base.header

    @property
    def build_id(self) -> str:
        return self.base.build_id

    @property
    def created_at(self) -> datetime:
        return self.base.created_at

    @property
    def model(self) -> str:
        return self.base.model

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def index_type(self) -> str:
        return self.base.index_type

    @property
    def duplicates(self) -> DuplicatesRef | None:
        return self.base.duplicates

    @cached_property
    def photos(self) -> PhotoParts | None:
        """Every row's photo fields (None: the base build has none: filters need a rebuild): the
        build's columns as loaded, the segments' beside them (artefacts/photo_parts.py)."""
        if self.base.photos is None:
            return None
        if not self._items:
            return PhotoParts([self.base.photos])
        added = [
            None if item.photo is None else Photo.of_document(item.photo, size=item.size)
            for item in self._items
        ]
        return PhotoParts([self.base.photos, PhotoColumns.of(added)])

    # ---- rows --------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Live images."""
        return len(self.base) - len(self.dead) + len(self._live)

    def __len__(self) -> int:
        """Rows numbered, deleted ones included."""
        return len(self.base) + len(self._items)

    def key(self, row: int) -> str:
        n = len(self.base)
        return self.base.key(row) if row < n else self._items[row - n].key

    def folder(self, row: int) -> str:
        n = len(self.base)
        return self.base.folder(row) if row < n else self._items[row - n].folder

    def row(self, key: str) -> int | None:
        """The live row holding ``key``, or None."""
        row = self._live.get(key)
        if row is not None:
            return row
        row = self.base.row(key)
        return None if row is None or self.is_dead(row) else row

    def is_dead(self, row: int) -> bool:
        n = len(self.base)
        if row >= n:
            return not self.extra_live[row - n]
        at = int(np.searchsorted(self.dead, row))
        return at < len(self.dead) and int(self.dead[at]) == row

    def live(self, rows: Rows) -> Rows:
        """``rows`` without the deleted ones."""
        rows = np.asarray(rows, dtype=np.int64)
        n = len(self.base)
        extra = rows >= n
        keep = ~np.isin(rows, self.dead, assume_unique=False)
        keep[extra] = self.extra_live[rows[extra] - n]
        return rows[keep]

    def end(self, segments: int) -> int:
        """The first row after the first ``segments`` segments' adds."""
        return self.ends[min(segments, len(self.ends) - 1)]

    # ---- folders and prefixes ------------------------------------------------------------

    @cached_property
    def folders(self) -> dict[str, int]:
        """Folder → live images, for folders that hold any."""
        counts = {name: self.live_in(Place([span])) for name, span in self.base.folders.items()}
        for name, rows in self._extra_by_folder.items():
            counts[name] = counts.get(name, 0) + len(rows)
        return {name: count for name, count in counts.items() if count}

    def folder_place(self, names: Sequence[str]) -> Place:
        spans = sorted(self.base.folders[name] for name in names if name in self.base.folders)
        extra = [self._extra_by_folder[name] for name in names if name in self._extra_by_folder]
        return Place(spans, np.sort(np.concatenate(extra)) if extra else NO_ROWS)

    def prefix_place(self, prefix: str) -> Place:
        found = self._extra_order.ranges(prefix)
        rows = [self._sorted_rows[start:end] for start, end in found]
        return Place(
            self.base.key_order().ranges(prefix),
            np.sort(np.concatenate(rows)) if rows else NO_ROWS,
        )

    def live_in(self, place: Place) -> int:
        """Live rows in ``place``."""
        total = len(place.extra)
        for start, end in place.ranges:
            dead = np.searchsorted(self.dead, end) - np.searchsorted(self.dead, start)
            total += end - start - int(dead)
        return total

    def children(self, parent: str) -> dict[str, int]:
        """The sub-folders directly under ``parent`` (ending in ``/``): prefix → live images."""
        order = self.base.key_order()
        counts = {
            child: self.live_in(Place(order.ranges(child))) for child, _ in order.children(parent)
        }
        for child, count in self._extra_order.children(parent):
            counts[child] = counts.get(child, 0) + count
        return {child: count for child, count in sorted(counts.items()) if count}

    @cached_property
    def _extra_by_folder(self) -> dict[str, Rows]:
        by_folder: dict[str, list[int]] = {}
        for row in self._live.values():
            folder = self._items[row - len(self.base)].folder
            by_folder.setdefault(folder, []).append(row)
        return {name: np.array(sorted(rows), dtype=np.int64) for name, rows in by_folder.items()}

    @cached_property
    def _sorted(self) -> tuple[list[str], Rows]:
        """The live segment keys sorted, and their rows in that order."""
        ordered = sorted(self._live.items())
        rows = np.array([row for _, row in ordered], dtype=np.int64)
        return [key for key, _ in ordered], rows

    @property
    def _sorted_rows(self) -> Rows:
        return self._sorted[1]

    @cached_property
    def _extra_order(self) -> KeyOrder:
        """Prefix lookups over the live segment keys (positions in ``_sorted_rows``)."""
        keys = self._sorted[0]
        return KeyOrder(keys, [(0, len(keys))])


@dataclass(frozen=True)
class LoadedView:
    """A base build and the segments applied on it, ready to search as one set of rows."""

    base: LoadedBuild
    segments: tuple[LoadedSegment, ...]
    metadata: ViewCatalog
    index: OverlayIndex

    @classmethod
    def of(cls, base: LoadedBuild, segments: Sequence[LoadedSegment] = ()) -> LoadedView:
        catalog = ViewCatalog(base.metadata, segments)
        return cls._made(base, tuple(segments), catalog, before=None)

    def extended(self, more: Sequence[LoadedSegment]) -> LoadedView:
        """This view with ``more`` segments applied after its own: only their keys are looked
        up, and the vectors held are copied once."""
        catalog = ViewCatalog(self.base.metadata, more, after=self.metadata)
        return LoadedView._made(self.base, self.segments + tuple(more), catalog, before=self)

    @classmethod
    def _made(
        cls,
        base: LoadedBuild,
        segments: tuple[LoadedSegment, ...],
        catalog: ViewCatalog,
        *,
        before: LoadedView | None,
    ) -> LoadedView:
        held = [] if before is None else [before.index.extra]
        added = segments if before is None else segments[len(before.segments) :]
        parts = held + [segment.vectors for segment in added if len(segment.vectors)]
        extra = np.vstack(parts) if parts else np.zeros((0, base.index.dim), dtype=np.float32)
        index = OverlayIndex(
            base.index, dead=catalog.dead, extra=extra, extra_live=catalog.extra_live
        )
        return cls(base, segments, catalog, index)

    @property
    def rows(self) -> Mapping[str, int]:
        """Live key → row."""
        return self.metadata.rows

    @property
    def build_id(self) -> str:
        return self.metadata.build_id

    @property
    def segment_ids(self) -> tuple[str, ...]:
        return self.metadata.segment_ids
