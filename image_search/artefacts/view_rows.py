"""A view's rows as the mapping a catalog offers (``rows``: live keys only); its ``items`` and
``keys`` are the catalog's own sequences (``Entries``, ``Keys``), which read any ``RowSource``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from image_search.artefacts.catalog import Entries, Keys, Rows

if TYPE_CHECKING:
    from image_search.artefacts.view import ViewCatalog


__all__ = ["Entries", "Keys", "LiveRows"]


class LiveRows(Rows):
    """``catalog.rows[key]``: a live key's row (``ViewCatalog.row`` finds live keys only);
    iterating and counting skip the deleted rows the view still numbers."""

    def __init__(self, catalog: ViewCatalog) -> None:
        super().__init__(catalog)
        self._catalog = catalog

    def __iter__(self) -> Iterator[str]:
        catalog = self._catalog
        return (catalog.key(row) for row in range(len(catalog)) if not catalog.is_dead(row))

    def __len__(self) -> int:
        return self._catalog.count
