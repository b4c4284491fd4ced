"""Filters on the photo itself: when it was taken, with which camera, its orientation and size.

A filter becomes the rows that match it, computed over the catalog's photo columns
(``artefacts/photos.py``) in a few vectorised passes, only inside the query's folder or prefix.
Those rows then restrict the search: up to ``EXACT_MATCHES`` of them are scored one by one against
their stored vectors (the true top-k of the matching images); more go to the index with a row
selector, within its recall (docs/api.md#filters has the figures).

Times are the camera's wall clock, as the photo's EXIF records it, compared as given: a photo
taken at 23:30 on June 1st in Tokyo matches June 1st wherever the server runs. A bound that is a
date covers that whole day; both bounds are inclusive.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import astuple, dataclass, replace
from datetime import date, datetime, timedelta

import numpy as np
import numpy.typing as npt

from image_search.artefacts.photo_parts import PhotoParts
from image_search.artefacts.photos import FIRST_SECOND, Orientation, PhotoColumns
from image_search.artefacts.view import ViewCatalog
from image_search.errors import PhotoFieldsMissingError
from image_search.index.overlay import OverlayIndex
from image_search.index.search_index import Allowed, Hits, Rows, SearchIndex
from image_search.model.vectors import Vectors

# Filters matching at most this many images are scored exactly, row by row (tens of ms at worst
# on 512-d vectors); above it a scan costs more than the index's own restricted search.
EXACT_MATCHES = 20_000
# Rows matched a block at a time: a block's records (2.5 MB) stay in the CPU's cache while each
# field is compared, where whole columns of 1M records were read from memory once a comparison
# (13 ms at 1M, bench/sections/filters.py).
BLOCK = 2**16
# What a filtered search needs of an index: the served view's (index/overlay.py) or a build's.
Index = SearchIndex | OverlayIndex
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")


def wall_clock(text: str) -> datetime | date:
    """``text`` as a date (``2024-06-01``) or a wall-clock time (``2024-06-01T14:30[:05]``);
    ValueError naming what is accepted otherwise, a time zone included (photos are compared by
    the time on the camera's clock, which no time zone converts)."""
    try:
        if DATE.fullmatch(text):
            return date.fromisoformat(text)
        if DATE_TIME.fullmatch(text):
            return datetime.fromisoformat(text)
    except ValueError as exc:  # 2024-02-30
        raise ValueError(f"{text!r} is not a real date or time") from exc
    raise ValueError(
        f"{text!r}: give a date (2024-06-01) or a time on the camera's clock "
        "(2024-06-01T14:30 or 2024-06-01T14:30:05), without a time zone"
    )


def seconds(text: str, *, end: bool) -> int:
    """The bound ``text`` names, as wall-clock seconds since 1970-01-01 (the columns' unit): a
    date's first second, or its last with ``end``; a time's second, rounded inwards."""
    moment = wall_clock(text)
    if not isinstance(moment, datetime):
        day = datetime(moment.year, moment.month, moment.day)
        return _seconds(day + timedelta(days=1)) - 1 if end else _seconds(day)
    whole = _seconds(moment.replace(microsecond=0))
    return whole + 1 if moment.microsecond and not end else whole


def _seconds(moment: datetime) -> int:
    return calendar.timegm(moment.timetuple())


def camera_name(name: str) -> str:
    """How camera names are compared: case-folded, runs of spaces as one."""
    return " ".join(name.casefold().split())


@dataclass(frozen=True, slots=True)
class PhotoFilter:
    """What a matching photo is; None (or 0) where anything goes."""

    taken_from: int | None = None  # wall-clock seconds, inclusive
    taken_to: int | None = None  # inclusive
    camera: str | None = None  # as camera_name() spells it
    orientation: Orientation | None = None
    min_width: int = 0
    min_height: int = 0

    @classmethod
    def of(
        cls,
        *,
        taken_after: str | None = None,
        taken_before: str | None = None,
        camera: str | None = None,
        orientation: Orientation | None = None,
        min_width: int | None = None,
        min_height: int | None = None,
    ) -> PhotoFilter:
        """From the API's fields (checked there: ``wall_clock`` parses the times)."""
        return cls(
            taken_from=None if taken_after is None else seconds(taken_after, end=False),
            taken_to=None if taken_before is None else seconds(taken_before, end=True),
            camera=None if camera is None else camera_name(camera),
            orientation=orientation,
            min_width=min_width or 0,
            min_height=min_height or 0,
        )

    def __bool__(self) -> bool:
        return self != NO_FILTER

    def identity(self) -> list[object]:
        """What the filter keeps, for a query's fingerprint."""
        return list(astuple(self))

    def without(self, *names: str) -> PhotoFilter:
        """This filter with ``names`` (its fields) left open: a facet's own filter."""
        return replace(self, **{name: getattr(NO_FILTER, name) for name in names})

    def rows(self, catalog: ViewCatalog, ranges: Allowed) -> Rows:
        """The live rows inside ``ranges`` (None: all) whose photo matches, ascending."""
        return catalog.live(self.matching(photo_columns(catalog), ranges))

    def matching(self, columns: PhotoColumns | PhotoParts, ranges: Allowed) -> Rows:
        """The rows of ``columns`` inside ``ranges`` (None: all) whose photo matches, deleted
        ones included, ascending. A view's parts are matched each in its own columns, never
        joined (artefacts/photo_parts.py)."""
        parts = columns if isinstance(columns, PhotoParts) else PhotoParts([columns])
        if isinstance(ranges, np.ndarray):  # rows scattered by segments (artefacts/view.py)
            rows = ranges.astype(np.int64, copy=False)
            keep = np.zeros(len(rows), dtype=bool)
            for start, end, part in parts.spans():
                inside = (rows >= start) & (rows < end)
                keep[inside] = self._mask(part.array[rows[inside] - start], self._codes(part))
            return rows[keep]
        spans = [(0, len(parts))] if ranges is None else ranges
        found = [
            self._matching_span(part, max(start, first) - first, min(end, last) - first) + first
            for start, end in spans
            for first, last, part in parts.spans()
            if max(start, first) < min(end, last)
        ]
        return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)

    def _matching_span(self, columns: PhotoColumns, start: int, end: int) -> Rows:
        """The rows ``start .. end-1`` of one part's ``columns`` that match, ascending."""
        codes = self._codes(columns)
        found = [
            block
            + np.flatnonzero(self._mask(columns.array[block : min(end, block + BLOCK)], codes))
            for block in range(start, end, BLOCK)
        ]
        return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)

    def _codes(self, columns: PhotoColumns) -> npt.NDArray[np.int64] | None:
        return None if self.camera is None else camera_codes(columns.cameras, self.camera)

    def _mask(
        self, photos: npt.NDArray[np.void], codes: npt.NDArray[np.int64] | None
    ) -> npt.NDArray[np.bool_]:
        keep = np.ones(len(photos), dtype=bool)
        if self.taken_from is not None or self.taken_to is not None:
            taken = photos["taken"]
            # NO_TIME (unknown) is below every bound a date can name, so this drops it too.
            keep &= taken >= (FIRST_SECOND if self.taken_from is None else self.taken_from)
            if self.taken_to is not None:
                keep &= taken <= self.taken_to
        if codes is not None:
            keep &= np.isin(photos["camera"], codes)
        if self.orientation is not None or self.min_width or self.min_height:
            width, height = photos["width"], photos["height"]
            # A side of 0 is unknown: at least 1 pixel drops it.
            keep &= (width >= max(1, self.min_width)) & (height >= max(1, self.min_height))
            if self.orientation == "landscape":
                keep &= width > height
            elif self.orientation == "portrait":
                keep &= width < height
            elif self.orientation == "square":
                keep &= width == height
        return keep


# Every photo: what a search without ``filters`` asks.
NO_FILTER = PhotoFilter()


def photo_columns(catalog: ViewCatalog) -> PhotoParts:
    """The view's photo columns; ``PhotoFieldsMissingError`` for a build made before them."""
    if catalog.photos is None:
        raise PhotoFieldsMissingError(
            f"build {catalog.build_id} has no photo fields (it was made before they existed): "
            "rebuild the index to filter by date, camera, orientation or size"
        )
    return catalog.photos


def camera_codes(cameras: Sequence[str], name: str) -> npt.NDArray[np.int64]:
    """The column codes (1 + index into ``cameras``) of the cameras spelled ``name``."""
    wanted = camera_name(name)
    return np.array(
        [code for code, known in enumerate(cameras, 1) if camera_name(known) == wanted],
        dtype=np.int64,
    )


def search(index: Index, query: Vectors, *, k: int, allowed: Allowed) -> Hits:
    """The top ``k`` among ``allowed``: a filter's few matches scored exactly, anything else
    searched as the index searches."""
    if isinstance(allowed, np.ndarray) and len(allowed) <= EXACT_MATCHES:
        return index.exact(query, k=k, allowed=allowed)
    return index.search(query, k=k, allowed=allowed)
