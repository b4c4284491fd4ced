"""What every index kind answers, and the row sets a search may be restricted to.

A search may be limited to ``allowed`` rows: ``None`` (every row), sorted non-overlapping id
``Ranges`` (a folder or a key prefix: contiguous runs in a build sorted by key), or ``Rows``, a
sorted array of row ids (any set: filters, tombstones, combined scopes).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Protocol

import faiss
import numpy as np
import numpy.typing as npt

from image_search.model.vectors import Vectors

Ranges = list[tuple[int, int]]
Rows = npt.NDArray[np.int64]
Allowed = Ranges | Rows | None
# Named extra files an index kind publishes beside its FAISS file (ivf-pq's re-rank codes).
Parts = list[bytes | memoryview]


@dataclass(frozen=True, slots=True)
class Hits:
    """Ids (into the index) and cosine scores, best first."""

    ids: list[int]
    scores: list[float]


class SearchIndex(Protocol):
    """An index over unit vectors whose ids are row numbers (inner product = cosine)."""

    @property
    def kind(self) -> str: ...

    @property
    def ntotal(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def search(self, query: Vectors, *, k: int, allowed: Allowed = None) -> Hits:
        """The top ``k`` rows for one query, only among ``allowed`` rows when given: the true
        top-k of those rows (up to the kind's recall), never a global top-k filtered down."""
        ...

    def exact(self, query: Vectors, *, k: int, allowed: Allowed) -> Hits:
        """The top ``k`` of ``allowed``, every one of them scored against its stored vector (what
        ``vector`` returns): exact over what the index holds, whatever the kind. Costs a row's
        decode and dot product per allowed row, so it suits small sets (filters' matches)."""
        ...

    def vector(self, row: int) -> Vectors:
        """The stored vector of ``row`` (as the index's codes hold it), shape ``(1, dim)``."""
        ...

    def serialised(self) -> npt.NDArray[np.uint8]:
        """The FAISS file's bytes, not copied again."""
        ...

    def sidecars(self) -> dict[str, Parts]:
        """Further files the kind needs to be opened again (name → its bytes in parts)."""
        ...

    def coarse_quantizer(self) -> faiss.Index | None:
        """The IVF kinds' coarse quantiser (their lists' centroids), else None."""
        ...


def allowed_count(allowed: Allowed, ntotal: int) -> int:
    if allowed is None:
        return ntotal
    if isinstance(allowed, np.ndarray):
        return len(allowed)
    return sum(end - start for start, end in allowed)


def allowed_ids(allowed: Allowed, ntotal: int) -> Rows:
    """Every allowed row id, ascending."""
    if allowed is None:
        return np.arange(ntotal, dtype=np.int64)
    if isinstance(allowed, np.ndarray):
        return allowed.astype(np.int64, copy=False)
    if not allowed:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(start, end, dtype=np.int64) for start, end in allowed])


def allowed_mask(allowed: Allowed, rows: npt.NDArray[np.integer]) -> npt.NDArray[np.bool_]:
    """Which of ``rows`` are allowed."""
    rows = np.asarray(rows, dtype=np.int64)
    if allowed is None:
        return np.ones(len(rows), dtype=bool)
    if isinstance(allowed, np.ndarray):
        return np.isin(rows, allowed)
    inside = np.zeros(len(rows), dtype=bool)
    for start, end in allowed:
        inside |= (rows >= start) & (rows < end)
    return inside


def selector(allowed: Allowed, ntotal: int, keep_alive: list[Any]) -> faiss.IDSelector | None:
    """A FAISS selector scoring only ``allowed`` rows (None: no selector, every row).

    SWIG does not keep the parts of a composite selector (or its bitmap) alive: they are held in
    ``keep_alive`` until the search ends.
    """
    if allowed is None:
        return None
    if isinstance(allowed, np.ndarray):
        # One bit a row: a constant-time check per scored row, whatever the set's shape.
        mask = np.zeros(ntotal, dtype=bool)
        mask[allowed] = True
        bitmap = np.packbits(mask, bitorder="little")
        keep_alive.append(bitmap)
        chosen = faiss.IDSelectorBitmap(ntotal, faiss.swig_ptr(bitmap))
        keep_alive.append(chosen)
        return chosen
    found: faiss.IDSelector | None = None
    for start, end in allowed:
        part = faiss.IDSelectorRange(start, end)
        keep_alive.append(part)
        found = part if found is None else faiss.IDSelectorOr(found, part)
        keep_alive.append(found)
    return found if found is not None else faiss.IDSelectorRange(0, 0)


# Past this many scores, ``top`` sorts only those at least as good as the k-th (a partition
# first): a stable sort of 20k scores took 1.8 ms, of the few left 0.05 ms.
PARTITION_FROM = 2048


def top(ids: npt.NDArray[np.integer], scores: npt.NDArray[np.floating], k: int) -> Hits:
    """The best ``k`` of ``ids`` by ``scores`` (ties in the order given)."""
    if 0 < k < len(scores) and len(scores) > PARTITION_FROM:
        worst = np.partition(-scores, k - 1)[k - 1]
        kept = np.flatnonzero(-scores <= worst)  # every score tied with the k-th too, in order
        order = kept[np.argsort(-scores[kept], kind="stable")[:k]]
    else:
        order = np.argsort(-scores, kind="stable")[:k]
    return hits(ids[order], scores[order])


def hits(ids: npt.NDArray[np.integer], scores: npt.NDArray[np.floating]) -> Hits:
    found = ids >= 0  # FAISS pads with -1 when fewer than k rows qualify
    return Hits([int(i) for i in ids[found]], [float(s) for s in scores[found]])


def npy_parts(array: npt.NDArray[Any]) -> Parts:
    """A ``.npy`` file as its header and the array's own memory (no copy of the data)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return [header.getvalue(), np.ascontiguousarray(array).data.cast("B")]
