"""A view's rows as the sequences and mapping a catalog offers: ``items``, ``keys``, ``rows``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, overload

from image_search.artefacts.catalog import Entry

if TYPE_CHECKING:
    from image_search.artefacts.view import ViewCatalog


class Entries(Sequence[Entry]):
    """``catalog.items[row]``: made when asked for."""

    def __init__(self, catalog: ViewCatalog) -> None:
        self._catalog = catalog

    def __len__(self) -> int:
        return len(self._catalog)

    @overload
    def __getitem__(self, row: int) -> Entry: ...
    @overload
    def __getitem__(self, row: slice) -> Sequence[Entry]: ...
    def __getitem__(self, row: int | slice) -> Entry | Sequence[Entry]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if not 0 <= row < len(self):
            raise IndexError(row)
        return Entry(self._catalog.key(row), self._catalog.folder(row))


class Keys(Sequence[str]):
    """``catalog.keys[row]``: every numbered row's key, deleted ones included."""

    def __init__(self, catalog: ViewCatalog) -> None:
        self._catalog = catalog

    def __len__(self) -> int:
        return len(self._catalog)

    @overload
    def __getitem__(self, row: int) -> str: ...
    @overload
    def __getitem__(self, row: slice) -> Sequence[str]: ...
    def __getitem__(self, row: int | slice) -> str | Sequence[str]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if not 0 <= row < len(self):
            raise IndexError(row)
        return self._catalog.key(row)


class LiveRows(Mapping[str, int]):
    """``catalog.rows[key]``: a live key's row."""

    def __init__(self, catalog: ViewCatalog) -> None:
        self._catalog = catalog

    def __getitem__(self, key: str) -> int:
        row = self._catalog.row(key)
        if row is None:
            raise KeyError(key)
        return row

    def __iter__(self) -> Iterator[str]:
        catalog = self._catalog
        return (catalog.key(row) for row in range(len(catalog)) if not catalog.is_dead(row))

    def __len__(self) -> int:
        return self._catalog.count
