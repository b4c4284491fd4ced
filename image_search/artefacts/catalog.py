"""A build's items as the service reads them: no Python object per item, nothing parsed per item.

Published next to ``image_metadata.json`` (which stays the complete contract) as

- ``catalog.json``: the build's header (``BuildHeader``: model, dim, count, bucket, folder ranges…);
- ``keys.bin``: every key in UTF-8, concatenated in row order;
- ``key_offsets.npy``: int64, ``count + 1`` offsets into ``keys.bin`` (key *i* is
  ``keys[offsets[i]:offsets[i + 1]]``);
- ``key_order.npy``: the rows sorted by key (byte order, which for UTF-8 is code point order),
  so a key's row is a binary search away;
- ``photos.npy``: one record of photo fields per row (artefacts/photos.py), the camera names in
  ``catalog.json``; absent in builds published before photo fields (``Catalog.photos`` is None).

``catalog.json`` also records a checksum of each binary file. Loading maps the three binary
files into memory and checks them (artefacts/integrity.py) in a few vectorised passes; after that
only the pages a query touches are read. A row's folder comes from the folder ranges.
"""

from __future__ import annotations

import bisect
import mmap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, overload

import numpy as np
import numpy.typing as npt

from image_search.artefacts import integrity
from image_search.artefacts.manifest import (
    CATALOG_FILE,
    KEY_OFFSETS_FILE,
    KEY_ORDER_FILE,
    KEYS_FILE,
    PHOTOS_FILE,
    BuildHeader,
    CatalogHeader,
    DuplicatesRef,
    Metadata,
)
from image_search.artefacts.photos import Photo, PhotoColumns
from image_search.index.prefixes import KeyOrder
from image_search.storage import checksum

FILES = (CATALOG_FILE, KEYS_FILE, KEY_OFFSETS_FILE, KEY_ORDER_FILE)
CHECKSUMMED = (KEYS_FILE, KEY_OFFSETS_FILE, KEY_ORDER_FILE)
Blob = bytes | mmap.mmap


@dataclass(frozen=True, slots=True)
class Entry:
    """One indexed image as the service shows it."""

    key: str
    folder: str


class Catalog:
    """Key of a row, row of a key, folder of a row; the header's fields as attributes."""

    def __init__(
        self,
        header: BuildHeader,
        *,
        keys: Blob,
        offsets: npt.NDArray[np.int64],
        order: npt.NDArray[np.integer],
        photos: PhotoColumns | None = None,
    ) -> None:
        self.header = header
        self._keys = keys
        self._offsets = offsets
        self._order = order
        # None: the build was published before photo fields (or read none of them).
        self.photos = photos
        spans = sorted((start, end, name) for name, (start, end) in header.folders.items())
        self._starts = [start for start, _, _ in spans]
        self._spans = spans
        self.items = Entries(self)
        self.keys = Keys(self)
        self.rows = Rows(self)

    # The header's fields, as the service and the API read them.
    @property
    def build_id(self) -> str:
        return self.header.build_id

    @property
    def created_at(self) -> datetime:
        return self.header.created_at

    @property
    def model(self) -> str:
        return self.header.model

    @property
    def dim(self) -> int:
        return self.header.dim

    @property
    def index_type(self) -> str:
        return self.header.index_type

    @property
    def count(self) -> int:
        return self.header.count

    @property
    def bucket(self) -> str:
        return self.header.bucket

    @property
    def folders(self) -> dict[str, tuple[int, int]]:
        return self.header.folders

    @property
    def sorted_by(self) -> str:
        return self.header.sorted_by

    @property
    def duplicates(self) -> DuplicatesRef | None:
        return self.header.duplicates

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def key(self, row: int) -> str:
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return bytes(self._keys[start:end]).decode()

    def folder(self, row: int) -> str:
        at = bisect.bisect_right(self._starts, row) - 1
        if at >= 0:
            start, end, name = self._spans[at]
            if start <= row < end:
                return name
        return ""

    def row(self, key: str) -> int | None:
        """The row holding ``key``: a binary search over the rows sorted by key."""
        at = bisect.bisect_left(self._order, key, key=lambda row: self.key(int(row)))
        if at < len(self):
            row = int(self._order[at])
            if self.key(row) == key:
                return row
        return None

    def key_order(self) -> KeyOrder:
        """Prefix lookups over the keys: one sorted run, or one a folder in builds sorted by
        (folder, key) before key order (index/prefixes.py)."""
        if self.sorted_by == "key":
            return KeyOrder(self.keys, [(0, len(self.keys))])
        return KeyOrder(self.keys, sorted(self.folders.values()))

    def check(self, *, index_count: int, index_dim: int) -> None:
        self.header.check(rows=len(self), index_count=index_count, index_dim=index_dim)

    @classmethod
    def from_metadata(cls, metadata: Metadata, *, photos: PhotoColumns | None = None) -> Catalog:
        """For builds published without the compact files, and for publishing them; ``photos``:
        the items' photo fields as columns (default: made from each item's ``photo``)."""
        keys = [item.key.encode() for item in metadata.items]
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum([len(key) for key in keys], out=offsets[1:])
        order = np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=_order_dtype(keys))
        if photos is not None and len(photos) != len(keys):
            raise ValueError(f"{len(photos)} photo records for {len(keys)} items")
        if photos is None and any(item.photo is not None for item in metadata.items):
            photos = PhotoColumns.of(
                [
                    None if item.photo is None else Photo.of_document(item.photo, size=item.size)
                    for item in metadata.items
                ]
            )
        catalog = cls(
            metadata.header(), keys=b"".join(keys), offsets=offsets, order=order, photos=photos
        )
        integrity.check_folders(catalog.header, rows=len(catalog), key=catalog.key)
        return catalog

    def files(self) -> dict[str, bytes]:
        """File name → content, as published; ``catalog.json`` holds the others' checksums."""
        binary = {
            KEYS_FILE: bytes(self._keys),
            KEY_OFFSETS_FILE: _npy(self._offsets),
            KEY_ORDER_FILE: _npy(self._order),
        }
        if self.photos is not None:
            binary[PHOTOS_FILE] = _npy(self.photos.array)
        header = CatalogHeader(
            **self.header.model_dump(include=set(BuildHeader.model_fields)),
            checksums={name: checksum.of_bytes(data) for name, data in binary.items()},
            cameras=None if self.photos is None else list(self.photos.cameras),
        )
        # No "cameras" at all without photos.npy: catalog.json stays as older builds wrote it.
        unset = {"cameras"} if self.photos is None else None
        return {CATALOG_FILE: header.model_dump_json(exclude=unset).encode(), **binary}

    @classmethod
    def open(cls, folder: Path, *, checksums: Mapping[str, str] | None = None) -> Catalog:
        """The catalog in ``folder`` (the files ``files()`` names), its arrays memory-mapped, once
        checked (artefacts/integrity.py); ``checksums``: of the binary files as downloaded, by
        name (computed from the files when not given). Raises ``DamagedCatalogError``."""
        header = CatalogHeader.model_validate_json((folder / CATALOG_FILE).read_bytes())
        # A pointer written without photos_key (by a version before them) leaves the file out.
        with_photos = header.cameras is not None and (folder / PHOTOS_FILE).is_file()
        if checksums is None:
            names = (*CHECKSUMMED, PHOTOS_FILE) if with_photos else CHECKSUMMED
            checksums = {name: checksum.of_file(folder / name) for name in names}
        verified = integrity.verify_checksums(header, checksums)
        try:
            offsets = np.load(folder / KEY_OFFSETS_FILE, mmap_mode="r", allow_pickle=False)
            order = np.load(folder / KEY_ORDER_FILE, mmap_mode="r", allow_pickle=False)
            photos = (
                np.load(folder / PHOTOS_FILE, mmap_mode="r", allow_pickle=False)
                if with_photos
                else None
            )
        except ValueError as exc:  # not an .npy file, or cut short
            raise integrity.DamagedCatalogError(
                f"build {header.build_id}: an array of the catalog is unreadable ({exc})"
            ) from exc
        keys = _map(folder / KEYS_FILE)
        integrity.check_arrays(
            header,
            keys=np.frombuffer(keys, dtype=np.uint8),
            offsets=offsets,
            order=order,
            full=not verified,
        )
        columns = None
        if photos is not None:
            assert header.cameras is not None
            integrity.check_photos(header, photos, cameras=header.cameras)
            columns = PhotoColumns(photos, header.cameras)
        catalog = cls(header, keys=keys, offsets=offsets, order=order, photos=columns)
        integrity.check_folders(header, rows=len(catalog), key=catalog.key)
        return catalog


class RowSource(Protocol):
    """What ``Entries`` and ``Keys`` read: a catalog, or a view of one with its segments."""

    def __len__(self) -> int: ...
    def key(self, row: int) -> str: ...
    def folder(self, row: int) -> str: ...
    def row(self, key: str) -> int | None: ...


class Entries(Sequence[Entry]):
    """``catalog.items[row]``: an entry made when asked for, never stored."""

    def __init__(self, source: RowSource) -> None:
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    @overload
    def __getitem__(self, row: int) -> Entry: ...
    @overload
    def __getitem__(self, row: slice) -> Sequence[Entry]: ...
    def __getitem__(self, row: int | slice) -> Entry | Sequence[Entry]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = _checked(row, len(self))
        return Entry(self._source.key(row), self._source.folder(row))


class Keys(Sequence[str]):
    """``catalog.keys[row]``: the keys in row order, decoded when asked for."""

    def __init__(self, source: RowSource) -> None:
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    @overload
    def __getitem__(self, row: int) -> str: ...
    @overload
    def __getitem__(self, row: slice) -> Sequence[str]: ...
    def __getitem__(self, row: int | slice) -> str | Sequence[str]:
        if isinstance(row, slice):
            return [self._source.key(i) for i in range(*row.indices(len(self)))]
        return self._source.key(_checked(row, len(self)))


def _checked(row: int, count: int) -> int:
    """``row`` as a sequence reads it (negative from the end), or IndexError."""
    if row < 0:
        row += count
    if not 0 <= row < count:
        raise IndexError(row)
    return row


class Rows(Mapping[str, int]):
    """``catalog.rows[key]``: key → row by binary search, without a dict of every key."""

    def __init__(self, source: RowSource) -> None:
        self._source = source

    def __getitem__(self, key: str) -> int:
        row = self._source.row(key)
        if row is None:
            raise KeyError(key)
        return row

    def __iter__(self) -> Iterator[str]:
        return (self._source.key(row) for row in range(len(self._source)))

    def __len__(self) -> int:
        return len(self._source)


def _order_dtype(keys: Sequence[bytes]) -> type[np.integer]:
    return np.uint32 if len(keys) < 2**32 else np.int64


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _map(path: Path) -> Blob:
    with path.open("rb") as file:
        if path.stat().st_size == 0:
            return b""
        # The mapping outlives the file object: mmap keeps its own descriptor.
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
