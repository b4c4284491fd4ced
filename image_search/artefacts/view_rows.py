"""A view's rows as the mapping a catalog offers (``rows``: live keys only); its ``items`` and
``keys`` are the catalog's own sequences (``Entries``, ``Keys``), which read any ``RowSource``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from image_search.artefacts.catalog import Entries, Keys

if TYPE_CHECKING:
    from image_search.artefacts.view import ViewCatalog


__all__ = ["Entries", "Keys", "LiveRows"]


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
