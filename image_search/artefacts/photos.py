"""The photo fields users filter by, one fixed-size record per catalog row (``photos.npy``).

A build reads them once per image (model/photo_fields.py) and publishes them twice: in
``image_metadata.json`` (``Item.photo``, for other tools) and as the catalog's ``photos.npy``
(memory-mapped by the service, like the keys). Camera names are stored once each, in
``catalog.json``; a row holds 1 + the index of its camera (0: unknown).

``taken`` is the wall-clock time on the camera, stored as seconds since 1970-01-01T00:00 read as
if it were UTC: filters compare wall-clock times, whatever zone the photo was taken in. Its offset
is kept apart, when EXIF recorded one. A photo without an EXIF date is dated by the object's
LastModified (UTC), flagged by ``source``.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from image_search.artefacts.manifest import Item, ItemPhoto, Metadata
from image_search.model.photo_fields import PhotoFields

PHOTO_DTYPE = np.dtype(
    [
        ("taken", "<i8"),
        ("offset", "<i2"),
        ("source", "u1"),
        ("camera", "<u4"),
        ("width", "<u4"),
        ("height", "<u4"),
        ("size", "<u8"),
        ("modified", "<i8"),
    ]
)
NO_TIME = int(np.iinfo(np.int64).min)
NO_OFFSET = -32768
# ``source`` values: where ``taken`` came from.
NO_DATE, FROM_EXIF, FROM_MODIFIED = 0, 1, 2
SOURCES: dict[int, Literal["exif", "modified"] | None] = {
    NO_DATE: None,
    FROM_EXIF: "exif",
    FROM_MODIFIED: "modified",
}
# Seconds of 0001-01-01T00:00 and 9999-12-31T23:59:59 from 1970: what datetime can hold.
FIRST_SECOND = -62_135_596_800
LAST_SECOND = 253_402_300_799
# EXIF offsets run from -12:00 to +14:00; a little wider costs nothing.
MAX_OFFSET_MINUTES = 15 * 60
EPOCH = datetime(1970, 1, 1)
# Items written to image_metadata.json at a time from the columns: bounds the dicts alive
# (~2 KB an item) to a few MB.
JSON_CHUNK = 4_096

Orientation = Literal["landscape", "portrait", "square"]
Records = npt.NDArray[np.void]


@dataclass(frozen=True, slots=True)
class Photo:
    """One image's fields, as hits and ``image_metadata.json`` carry them."""

    taken: datetime | None = None  # naive: the wall clock on the camera (or LastModified, UTC)
    taken_offset: str | None = None  # "+02:00", when EXIF recorded the time zone
    taken_source: Literal["exif", "modified"] | None = None
    camera: str | None = None
    width: int | None = None  # as shown, after the EXIF rotation
    height: int | None = None
    size: int | None = None  # object bytes
    modified: datetime | None = None  # the object's LastModified, aware UTC

    @property
    def orientation(self) -> Orientation | None:
        if not self.width or not self.height:
            return None
        if self.width == self.height:
            return "square"
        return "landscape" if self.width > self.height else "portrait"

    @classmethod
    def read(cls, fields: PhotoFields, *, size: int | None, modified: datetime | None) -> Photo:
        """The photo of an object whose header gave ``fields``: dated by LastModified (flagged)
        when EXIF gives no date."""
        if fields.taken is not None:
            taken, offset, source = fields.taken, fields.taken_offset, "exif"
        elif modified is not None:
            taken, offset, source = modified.astimezone(UTC).replace(tzinfo=None), None, "modified"
        else:
            taken, offset, source = None, None, None
        return cls(
            taken=None if taken is None else taken.replace(microsecond=0),
            taken_offset=offset,
            taken_source=source,  # type: ignore[arg-type]
            camera=fields.camera,
            width=fields.width,
            height=fields.height,
            size=size,
            modified=None if modified is None else modified.astimezone(UTC).replace(microsecond=0),
        )

    def fields(self) -> PhotoFields:
        """What the image's header said (the LastModified fallback left out): what an
        incremental build reuses, to date again by the object's LastModified as now listed."""
        exif = self.taken_source == "exif"
        return PhotoFields(
            taken=self.taken if exif else None,
            taken_offset=self.taken_offset if exif else None,
            camera=self.camera,
            width=self.width,
            height=self.height,
        )

    def document(self) -> ItemPhoto:
        """As ``image_metadata.json``'s ``Item.photo`` (the size is the item's own)."""
        return ItemPhoto(
            taken=self.taken,
            taken_offset=self.taken_offset,
            taken_source=self.taken_source,
            camera=self.camera,
            width=self.width,
            height=self.height,
            orientation=self.orientation,
            modified=self.modified,
        )

    @classmethod
    def of_document(cls, photo: ItemPhoto, *, size: int | None) -> Photo:
        # A date without its source, or a source without its date, is no date.
        dated = photo.taken is not None and photo.taken_source is not None
        return cls(
            taken=photo.taken if dated else None,
            taken_offset=photo.taken_offset if dated and photo.taken_source == "exif" else None,
            taken_source=photo.taken_source if dated else None,
            camera=photo.camera,
            width=photo.width,
            height=photo.height,
            size=size,
            modified=None if photo.modified is None else photo.modified.astimezone(UTC),
        )


class PhotoColumns:
    """Every row's fields: ``array`` (``PHOTO_DTYPE``, may be memory-mapped) and the cameras."""

    def __init__(self, array: Records, cameras: Sequence[str]) -> None:
        self.array = array
        self.cameras = tuple(cameras)

    def __len__(self) -> int:
        return len(self.array)

    def photo(self, row: int) -> Photo:
        record = self.array[row]
        taken, camera = int(record["taken"]), int(record["camera"])
        return Photo(
            taken=_naive(taken),
            taken_offset=_offset_text(int(record["offset"])),
            taken_source=SOURCES.get(int(record["source"])),
            camera=self.cameras[camera - 1] if 0 < camera <= len(self.cameras) else None,
            width=int(record["width"]) or None,
            height=int(record["height"]) or None,
            size=int(record["size"]) or None,
            modified=_utc(int(record["modified"])),
        )

    @classmethod
    def of(cls, photos: Sequence[Photo | None]) -> PhotoColumns:
        """Columns for ``photos`` in order; None: nothing known about that row."""
        cameras = sorted({p.camera for p in photos if p is not None and p.camera})
        number = {name: at + 1 for at, name in enumerate(cameras)}
        array = empty(len(photos))
        for row, p in enumerate(photos):
            if p is not None:
                array[row] = _record(p, camera=number.get(p.camera or "", 0))
        return cls(array, cameras)

    def take(self, rows: Sequence[int] | npt.NDArray[np.integer]) -> PhotoColumns:
        """The ``rows``, in that order (cameras no row uses any more are kept)."""
        return PhotoColumns(self.array[np.asarray(rows, dtype=np.int64)], self.cameras)

    @classmethod
    def concat(cls, parts: Sequence[PhotoColumns]) -> PhotoColumns:
        """The parts' rows one after the other, their camera numbers merged."""
        cameras = sorted({name for part in parts for name in part.cameras})
        number = {name: at + 1 for at, name in enumerate(cameras)}
        arrays = []
        for part in parts:
            renumber = np.array([0, *(number[n] for n in part.cameras)], dtype=np.uint32)
            array = np.array(part.array, dtype=PHOTO_DTYPE)  # a copy, never the mapped file
            array["camera"] = renumber[np.minimum(array["camera"], len(part.cameras))]
            arrays.append(array)
        merged = np.concatenate(arrays) if arrays else empty(0)
        return cls(merged, cameras)


def known(array: Records) -> npt.NDArray[np.bool_]:
    """The rows whose fields were read: every read records the object's size (an image has
    bytes), a row nothing is known of has none."""
    return np.asarray(array["size"] > 0)


def metadata_json(metadata: Metadata, photos: PhotoColumns | None) -> bytes:
    """``image_metadata.json``'s bytes, each item's ``photo`` written from ``photos`` (rows in
    item order; unknown rows without one) rather than from an object per item: a build of
    millions would hold gigabytes of them. The same document as the items' own ``photo``."""
    if photos is None:
        return metadata.model_dump_json().encode()
    items = metadata.items
    if len(photos) != len(items):
        raise ValueError(f"{len(photos)} photo records for {len(items)} items")
    # "items":[] appears once: inside a JSON string its quotes would be escaped.
    before, _, after = (
        metadata.model_copy(update={"items": []}).model_dump_json().partition('"items":[]')
    )
    chunks = []
    for start in range(0, len(items), JSON_CHUNK):
        records = photos.array[start : start + JSON_CHUNK].tolist()
        rows = [
            _item_document(item, record, photos.cameras)
            for item, record in zip(items[start : start + JSON_CHUNK], records, strict=True)
        ]
        chunks.append(json.dumps(rows, ensure_ascii=False, separators=(",", ":"))[1:-1].encode())
    items_json = b",".join(chunk for chunk in chunks if chunk)
    return b"".join([before.encode(), b'"items":[', items_json, b"]", after.encode()])


def _item_document(
    item: Item, record: tuple[int, ...], cameras: tuple[str, ...]
) -> dict[str, object]:
    document: dict[str, object] = {
        "key": item.key,
        "folder": item.folder,
        "etag": item.etag,
        "size": item.size,
    }
    taken, offset, source, camera, width, height, size, modified = record
    if not size:
        return document  # not read: no photo, as ItemPhoto's absence says
    photo: dict[str, object] = {}
    day = _naive(taken) if SOURCES.get(source) else None
    if day is not None:
        photo["taken"] = day.isoformat()
        if (text := _offset_text(offset)) is not None and SOURCES[source] == "exif":
            photo["taken_offset"] = text
        photo["taken_source"] = SOURCES[source]
    if 0 < camera <= len(cameras):
        photo["camera"] = cameras[camera - 1]
    if width:
        photo["width"] = width
    if height:
        photo["height"] = height
    if width and height:
        photo["orientation"] = (
            "square" if width == height else "landscape" if width > height else "portrait"
        )
    if (moment := _utc(modified)) is not None:
        photo["modified"] = moment.isoformat().replace("+00:00", "Z")
    document["photo"] = photo
    return document


def empty(rows: int) -> Records:
    """``rows`` records that know nothing."""
    array = np.zeros(rows, dtype=PHOTO_DTYPE)
    array["taken"] = NO_TIME
    array["offset"] = NO_OFFSET
    array["modified"] = NO_TIME
    return array


def seconds(moment: datetime) -> int:
    """Seconds since 1970-01-01T00:00 (naive: read as UTC; aware: its UTC instant)."""
    return calendar.timegm(moment.utctimetuple())


def offset_minutes(text: str | None) -> int:
    """``"+02:00"`` → 120; ``NO_OFFSET`` for None or anything else."""
    if text is None or len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return NO_OFFSET
    hours, minutes = text[1:3], text[4:6]
    if not (hours.isdigit() and minutes.isdigit()):
        return NO_OFFSET
    value = int(hours) * 60 + int(minutes)
    return NO_OFFSET if value > MAX_OFFSET_MINUTES else (-value if text[0] == "-" else value)


def _record(photo: Photo, *, camera: int) -> tuple[int, ...]:
    return (
        NO_TIME if photo.taken is None else seconds(photo.taken.replace(tzinfo=None)),
        offset_minutes(photo.taken_offset),
        {source: code for code, source in SOURCES.items()}.get(photo.taken_source, NO_DATE),
        camera,
        _dimension(photo.width),
        _dimension(photo.height),
        max(0, min(photo.size or 0, 2**64 - 1)),
        NO_TIME if photo.modified is None else seconds(photo.modified),
    )


def _dimension(value: int | None) -> int:
    return value if value is not None and 0 < value < 2**32 else 0


def _offset_text(minutes: int) -> str | None:
    if minutes == NO_OFFSET or abs(minutes) > MAX_OFFSET_MINUTES:
        return None
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _naive(value: int) -> datetime | None:
    if value == NO_TIME or not FIRST_SECOND <= value <= LAST_SECOND:
        return None
    return EPOCH + timedelta(seconds=value)


def _utc(value: int) -> datetime | None:
    if value == NO_TIME or not FIRST_SECOND <= value <= LAST_SECOND:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=value)
