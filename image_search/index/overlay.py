"""An index with rows added and rows deleted since it was built, searched as one set of rows.

Rows ``0 .. N-1`` are the base index's ids, rows ``N ..`` the extra vectors in the order given
(the delta segments' adds, artefacts/view.py). A deleted row keeps its number and is never
returned. A search is the true top-k over the live rows it is allowed (up to the base kind's
recall): the base is asked for ``k`` plus the deleted rows it could return while those are few
(a margin: no per-row check), or through an ID selector of its live rows otherwise; the extra
rows are few (segments are folded into the base by the next build) and every allowed one is
scored exactly.
"""

from __future__ import annotations

from functools import cached_property

import faiss
import numpy as np
import numpy.typing as npt

from image_search.index.search_index import Allowed, Hits, Ranges, Rows, SearchIndex, allowed_ids
from image_search.model.vectors import Vectors

# Deleted rows a base search may ask past. Beyond it a selector of the live rows costs less than
# the extra results (an IVF or HNSW search grows with k).
MARGIN_MAX = 256
# Scoring every extra row costs less than gathering the allowed ones first unless they are fewer
# than one in this many.
GATHER_BELOW = 8
Mask = npt.NDArray[np.bool_]


class OverlayIndex:
    """``base`` minus the rows ``dead`` lists, plus ``extra`` rows where ``extra_live`` is set."""

    def __init__(self, base: SearchIndex, *, dead: Rows, extra: Vectors, extra_live: Mask) -> None:
        if extra.ndim != 2 or len(extra) != len(extra_live):
            raise ValueError(f"extra rows {extra.shape} and their mask {extra_live.shape} differ")
        if len(extra) and extra.shape[1] != base.dim:
            raise ValueError(f"extra rows are {extra.shape[1]} wide, the index {base.dim}")
        self.base = base
        self.dead = np.unique(np.asarray(dead, dtype=np.int64))  # sorted, once each
        self.extra = np.ascontiguousarray(extra, dtype=np.float32)  # FAISS reads it as is
        self.extra_live = extra_live
        self._base_count = base.ntotal

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def ntotal(self) -> int:
        """Rows numbered, deleted ones included: the next extra row's number."""
        return self._base_count + len(self.extra)

    @property
    def dim(self) -> int:
        return self.base.dim

    def vector(self, row: int) -> Vectors:
        if row < self._base_count:
            return self.base.vector(row)
        return self.extra[row - self._base_count].reshape(1, -1)

    def search(self, query: Vectors, *, k: int, allowed: Allowed = None) -> Hits:
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if not len(self.dead) and not len(self.extra):
            return self.base.search(query, k=k, allowed=allowed)
        base_allowed, extra_rows = self._split(allowed)
        found = self._search_base(query, k=k, allowed=base_allowed)
        return self._with_extra(found, query, k=k, rows=extra_rows)

    def exact(self, query: Vectors, *, k: int, allowed: Allowed) -> Hits:
        """Every live row of ``allowed`` scored against its stored vector (``SearchIndex``)."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        base_allowed, extra_rows = self._split(allowed)
        live = self._live_base(base_allowed) if len(self.dead) else base_allowed
        found = self.base.exact(query, k=k, allowed=live)
        return self._with_extra(found, query, k=k, rows=extra_rows)

    def _with_extra(self, found: Hits, query: Vectors, *, k: int, rows: Rows) -> Hits:
        """The best ``k`` of the base's hits and the extra ``rows``, scored exactly."""
        if not len(rows):
            return found
        scores = self._scores(rows - self._base_count, query[0])
        if len(scores) > k:  # the k best, and any tied with the last of them
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            best = scores >= kth
            rows, scores = rows[best], scores[best]
        ids = np.concatenate([np.asarray(found.ids, dtype=np.int64), rows])
        both = np.concatenate([np.asarray(found.scores, dtype=np.float32), scores])
        # Best score first, ties in row order: the order cursors cut pages by (serve/cursors.py).
        order = np.lexsort((ids, -both))[:k]
        return Hits([int(i) for i in ids[order]], [float(s) for s in both[order]])

    def _scores(self, at: Rows, query: Vectors) -> npt.NDArray[np.float32]:
        """Inner products of the extra rows ``at`` (positions in ``extra``) with ``query``.

        FAISS's one-thread SIMD loop rather than numpy's BLAS: a single query is a matrix-vector
        product, memory-bound (2 KB a row at 512-d), and BLAS's threads only wait on each other
        (measured: 10k rows 4.3 ms against 17 ms on a busy 2-core machine). Most of the rows are
        scored in one pass over all of them, a few gathered first.
        """
        rows = self.extra if len(at) * GATHER_BELOW > len(self.extra) else None
        chosen = np.ascontiguousarray(self.extra[at]) if rows is None else rows
        out = np.empty(len(chosen), dtype=np.float32)
        query = np.ascontiguousarray(query, dtype=np.float32)
        faiss.fvec_inner_products_ny(
            faiss.swig_ptr(out), faiss.swig_ptr(query), faiss.swig_ptr(chosen), self.dim, len(out)
        )
        return out if rows is None else out[at]

    def _split(self, allowed: Allowed) -> tuple[Allowed, Rows]:
        """The base's part of ``allowed``, and the live extra rows in it."""
        n, end = self._base_count, self.ntotal
        if allowed is None:
            return None, self._live_extra
        if isinstance(allowed, np.ndarray):
            rows = allowed.astype(np.int64, copy=False)
            cut = int(np.searchsorted(rows, n))
            return rows[:cut], self._alive(rows[cut:])
        base: Ranges = [(start, min(stop, n)) for start, stop in allowed if start < n]
        extra = [(max(start, n), min(stop, end)) for start, stop in allowed if stop > n]
        rows = allowed_ids([(a, b) for a, b in extra if a < b], end)
        return (None if base == [(0, n)] else base), self._alive(rows)

    def _alive(self, rows: Rows) -> Rows:
        return rows[self.extra_live[rows - self._base_count]]

    @cached_property
    def _live_extra(self) -> Rows:
        return np.flatnonzero(self.extra_live).astype(np.int64) + self._base_count

    def _search_base(self, query: Vectors, *, k: int, allowed: Allowed) -> Hits:
        dead = self._dead_in(allowed)
        if not dead:
            return self.base.search(query, k=k, allowed=allowed)
        if dead <= MARGIN_MAX:
            found = self.base.search(query, k=k + dead, allowed=allowed)
            live = self._base_live[np.asarray(found.ids, dtype=np.int64)]
            kept = np.flatnonzero(live)[:k]
            return Hits([found.ids[at] for at in kept], [found.scores[at] for at in kept])
        return self.base.search(query, k=k, allowed=self._live_base(allowed))

    def _dead_in(self, allowed: Allowed) -> int:
        """How many deleted rows ``allowed`` (base rows) holds."""
        if not len(self.dead):
            return 0
        if allowed is None:
            return len(self.dead)
        if isinstance(allowed, np.ndarray):
            return int(np.count_nonzero(~self._base_live[allowed]))
        bounds = np.asarray(allowed, dtype=np.int64).reshape(-1, 2)
        starts = np.searchsorted(self.dead, bounds[:, 0])
        return int((np.searchsorted(self.dead, bounds[:, 1]) - starts).sum())

    def _live_base(self, allowed: Allowed) -> Rows:
        if allowed is None:
            return self._every_live_base
        rows = allowed_ids(allowed, self._base_count)
        return rows[self._base_live[rows]]

    @cached_property
    def _base_live(self) -> Mask:
        live = np.ones(self._base_count, dtype=bool)
        live[self.dead] = False
        return live

    @cached_property
    def _every_live_base(self) -> Rows:
        return np.flatnonzero(self._base_live).astype(np.int64)
