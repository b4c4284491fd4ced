"""The index artefacts' documents and file names: a contract the API and other tools read."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    NaiveDatetime,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from image_search.artefacts.versions import Versioned
from image_search.errors import IndexMismatchError

SCHEMA_VERSION = 1
INDEX_FILE = "image_faiss_index.bin"
METADATA_FILE = "image_metadata.json"
EMBEDDINGS_FILE = "embeddings.npy"
POINTER_FILE = "current.json"
# A segment's files (artefacts/segments.py).
SEGMENT_FILE = "segment.json"
SEGMENT_VECTORS_FILE = "vectors.npy"
# The items again, in a form read without a Python object per item (artefacts/catalog.py).
CATALOG_FILE = "catalog.json"
KEYS_FILE = "keys.bin"
KEY_OFFSETS_FILE = "key_offsets.npy"
KEY_ORDER_FILE = "key_order.npy"
# One fixed-size record of photo fields per row (artefacts/photos.py); absent in older builds.
PHOTOS_FILE = "photos.npy"
# ivf-pq only: the codes its candidates are re-ranked with (index/rerank.py).
RERANK_FILE = "rerank.npz"
RERANK_CODES_FILE = "rerank_codes.npy"


# Bounds on what a document may claim (it is read from S3): a camera name longer than this is not
# one (model/photo_fields.py keeps 64 characters), and a side of 2**32 pixels does not exist.
MAX_CAMERA = 256
MAX_SIDE = 2**32 - 1


class ItemPhoto(BaseModel):
    """What users filter an image by (artefacts/photos.py ``Photo``); unknown fields are left
    out of the JSON. ``taken`` is the camera's wall-clock time (no zone; ``taken_offset`` when
    EXIF recorded it), or the object's LastModified in UTC when ``taken_source`` is
    ``"modified"`` (the file carries no date)."""

    taken: NaiveDatetime | None = None
    taken_offset: str | None = Field(default=None, pattern=r"^[+-]\d\d:[0-5]\d$")
    taken_source: Literal["exif", "modified"] | None = None
    camera: str | None = Field(default=None, min_length=1, max_length=MAX_CAMERA)
    width: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    height: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    orientation: Literal["landscape", "portrait", "square"] | None = None
    modified: AwareDatetime | None = None

    @model_serializer(mode="wrap")
    def _known_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        return {name: value for name, value in handler(self).items() if value is not None}


class ListedItem(BaseModel):
    """An item as a build reads an earlier build's: without its photo fields (it reads those
    from photos.npy; an object per photo would cost gigabytes at millions of images)."""

    key: str
    folder: str
    etag: str
    size: int


class Item(ListedItem):
    # Absent in builds published before photo fields, and where the build could not read them
    # (the next build tries again). Left out rather than null, so such an item reads as before.
    photo: ItemPhoto | None = Field(default=None, exclude_if=lambda photo: photo is None)


class Skipped(BaseModel):
    """An object left out of the build. ``cause`` "image": these bytes (this ``etag``) are not a
    usable image, so later builds skip them until the object changes; "download": the object
    could not be fetched, so the next build tries again."""

    key: str
    reason: str
    etag: str | None = None
    cause: Literal["image", "download"] = "download"


class DuplicatesRef(BaseModel):
    """Where a build's near-duplicate groups are, and the score they were found at."""

    key: str
    min_score: float
    groups: int


class BuildHeader(Versioned):
    """A build without its per-item lists: ``catalog.json``, and the head of the metadata."""

    FORMAT: ClassVar[int] = SCHEMA_VERSION
    DOCUMENT: ClassVar[str] = "the metadata"

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    build_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model: str
    dim: int
    metric: Literal["inner_product"] = "inner_product"
    index_type: str
    count: int
    bucket: str
    folders: dict[str, tuple[int, int]]
    # "key": items sorted by key, so every key prefix is one id range. Builds without the field
    # were sorted by (folder, key): each folder's range is sorted by key.
    sorted_by: Literal["key", "folder"] = "folder"
    duplicates: DuplicatesRef | None = None  # None: made before duplicates were computed

    def check(self, *, rows: int, index_count: int, index_dim: int) -> None:
        """Refuse artefacts that disagree with each other (a newer format was refused when
        read: artefacts/versions.py)."""
        if not (self.count == rows == index_count):
            raise IndexMismatchError(
                f"build {self.build_id}: metadata count {self.count}, items {rows}, "
                f"index vectors {index_count} disagree: rebuild with --full"
            )
        if self.dim != index_dim:
            raise IndexMismatchError(
                f"build {self.build_id}: metadata dim {self.dim} but index dim {index_dim}"
            )
        self.check_folder_ranges()

    def check_folder_ranges(self) -> None:
        """Folder ranges that lie inside the index without overlapping: a range past the end
        would reach FAISS as an id it does not have."""
        end, before = 0, ""
        for name, (start, stop) in sorted(self.folders.items(), key=lambda pair: pair[1]):
            if start < end:
                raise IndexMismatchError(
                    f"build {self.build_id}: folder {name!r} range [{start}, {stop}) overlaps "
                    f"folder {before!r}: rebuild with --full"
                )
            if not (start < stop <= self.count):
                raise IndexMismatchError(
                    f"build {self.build_id}: folder {name!r} range [{start}, {stop}) is not "
                    f"inside the index of {self.count} vectors: rebuild with --full"
                )
            end, before = stop, name


class CatalogHeader(BuildHeader):
    """``catalog.json``: the header, and a checksum of each binary file of the compact catalog
    (storage/checksum.py). Empty in builds published before checksums: they still load."""

    DOCUMENT: ClassVar[str] = "catalog.json"

    checksums: dict[str, str] = {}
    # The camera names photos.npy numbers (sorted); None: the build has no photos.npy.
    cameras: list[str] | None = None


# An item's ``"photo"`` member as written: an object of plain values (strings skipped whole, so a
# brace inside one does not end it). Preceded by a comma, the quote cannot be inside a string.
PHOTO_MEMBER = re.compile(rb',"photo":\{[^{}"]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^{}"]*)*\}')


class Listing(BuildHeader):
    """``image_metadata.json`` without the items' photo fields (``ListedItem``): what a build
    reads of the build before it."""

    @classmethod
    def read(cls, data: bytes) -> Listing:
        """The document in ``data``; the photo members are cut out first, since the JSON parser
        holds the whole document while it validates, photos included (3x the bytes)."""
        return cls.model_validate_json(PHOTO_MEMBER.sub(b"", data))

    DOCUMENT: ClassVar[str] = "image_metadata.json"

    items: Sequence[ListedItem]  # a list; Sequence so that Metadata's list[Item] is one
    skipped: list[Skipped] = []

    def header(self) -> BuildHeader:
        return BuildHeader.model_validate(self.model_dump(include=set(BuildHeader.model_fields)))

    def check(self, *, rows: int | None = None, index_count: int, index_dim: int) -> None:
        rows = len(self.items) if rows is None else rows
        super().check(rows=rows, index_count=index_count, index_dim=index_dim)
        self.check_keys()

    def check_keys(self) -> None:
        """Each key once: the compact catalog made from these items relies on it."""
        if len({item.key for item in self.items}) != len(self.items):
            raise IndexMismatchError(
                f"build {self.build_id}: metadata lists a key more than once: rebuild with --full"
            )


class SegmentRef(BaseModel):
    """A segment the pointer applies on its build: where its document is, and its sizes."""

    segment_id: str
    key: str
    adds: int = Field(ge=0)
    deletes: int = Field(ge=0)


class Pointer(Versioned):
    """``current.json``: which build readers should use. Written last when publishing."""

    DOCUMENT: ClassVar[str] = "current.json"

    build_id: str
    index_key: str
    metadata_key: str
    embeddings_key: str | None = None
    # Names catalog.json; the other compact files sit beside it. Absent in builds published before
    # the compact files existed: readers then fall back to the metadata JSON.
    catalog_key: str | None = None
    # ivf-pq builds only: names rerank.npz (rerank_codes.npy sits beside it).
    rerank_key: str | None = None
    # Names photos.npy, the catalog's photo fields. Absent in builds published without them.
    photos_key: str | None = None
    # When each build replaced in the last IMAGE_SEARCH_PRUNE_GRACE_SECONDS stopped being current
    # (build id → time): servers may still be reading its files, so pruning spares it. Absent
    # (not null) when there is none, so such a pointer reads as before the field existed.
    superseded: dict[str, datetime] | None = None
    # The segments applied on the build, in the order they apply (artefacts/segments.py). Absent
    # (not null) when there is none. A reader that predates them serves the build alone: the
    # index as it was when built, what every version served before segments.
    segments: list[SegmentRef] | None = None

    def document(self) -> bytes:
        """``current.json``'s bytes."""
        # Absent (not null) when unset, so such a pointer reads as one from before the fields.
        unset = {
            name for name in ("photos_key", "superseded", "segments") if getattr(self, name) is None
        }
        return self.model_dump_json(exclude=unset or None).encode()


class Metadata(Listing):
    """``image_metadata.json``: the header, then every item in id order and what was skipped."""

    items: list[Item]


def folder_ranges(items: Sequence[ListedItem]) -> dict[str, tuple[int, int]]:
    """``{folder: [start, end)}`` for items already sorted by folder."""
    ranges: dict[str, tuple[int, int]] = {}
    for row, item in enumerate(items):
        start, _ = ranges.get(item.folder, (row, row))
        ranges[item.folder] = (start, row + 1)
    return ranges
