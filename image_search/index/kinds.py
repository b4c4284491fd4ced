"""The index kinds held in one FAISS index: exact (flat), HNSW and IVF with 8-bit codes.

Each answers ``SearchIndex``; what differs between them is only how FAISS is asked (search
parameters) and whether a small restricted search is better scored exactly.
"""

from __future__ import annotations

import threading
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from image_search.index.search_index import (
    Allowed,
    Hits,
    Parts,
    allowed_count,
    allowed_ids,
    hits,
    selector,
    top,
)
from image_search.model.vectors import Vectors

HNSW_EF_SEARCH = 128
# Measured on 1M clustered 512-d vectors (bench/): recall@10 against exact search is flat from
# nprobe 8 upwards (the 8-bit codes set the ceiling); 32 leaves a margin for harder data at
# about a millisecond per query.
IVF_NPROBE = 32
# Older "ivfpq" builds can hold IVF-PQ with a refine stage: searched with these parameters.
REFINE_K_FACTOR = 16
# Restricted searches over at most this many rows score every row (exact) on the approximate
# kinds: they only look where the query's neighbours are likely, and inside a small folder that
# can miss rows of the true top-k. Scoring every row is cheap there.
EXACT_RANGE = 4096
# Exact scoring of fewer rows than this share of the index decodes just those rows; from it up,
# a scan of every code with a row selector costs less. Measured one thread, 512-d: the two break
# even at 0.5-1 % of 100k rows and 1-4 % of 500k (flat's decoding is a copy, ivf-sq8's is not).
SCAN_SHARE = 1 / 64
# Rows decoded at a time: a bounded buffer (8 MB at 512-d) however many are scored.
DECODE_CHUNK = 4096
# FAISS's parallel_mode that splits one query's inverted lists between threads.
PARALLEL_OVER_LISTS = 1

_DIRECT_MAP_LOCK = threading.Lock()


class FaissIndex:
    """One FAISS index searched as it is; subclasses say how FAISS is asked."""

    kind = "flat"
    approximate = False  # scores are exact: a small restricted search needs no exact rescoring

    def __init__(self, faiss_index: faiss.Index) -> None:
        self.faiss = faiss_index

    @property
    def ntotal(self) -> int:
        return int(self.faiss.ntotal)

    @property
    def dim(self) -> int:
        return int(self.faiss.d)

    def search(self, query: Vectors, *, k: int, allowed: Allowed = None) -> Hits:
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        available = allowed_count(allowed, self.ntotal)
        k = min(k, available)
        if k <= 0:
            return Hits([], [])
        if allowed is not None and available <= EXACT_RANGE and self.approximate:
            return self._exact(query, k=k, allowed=allowed)
        keep_alive: list[Any] = []
        # A selector costs a check per scored row (bench/: ~1 ms of 18 on a flat 100k scan), so
        # a search of the whole index goes without one.
        chosen = selector(allowed, self.ntotal, keep_alive)
        found = self._search(query, k=k, available=available, chosen=chosen)
        if len(found.ids) < k:
            # Graph and IVF searches can run out of candidates inside a small range; fall back
            # to an exact scan of the allowed rows so the answer is never short.
            return self._exact(query, k=k, allowed=allowed)
        return found

    def _search(
        self, query: Vectors, *, k: int, available: int, chosen: faiss.IDSelector | None
    ) -> Hits:
        scores, ids = self.faiss.search(query, k, params=self._params(chosen, k))
        return hits(ids[0], scores[0])

    def _params(self, chosen: faiss.IDSelector | None, k: int) -> Any:
        return faiss.SearchParameters(sel=chosen)

    def exact(self, query: Vectors, *, k: int, allowed: Allowed) -> Hits:
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        k = min(k, allowed_count(allowed, self.ntotal))
        return self._exact(query, k=k, allowed=allowed) if k > 0 else Hits([], [])

    def _exact(self, query: Vectors, *, k: int, allowed: Allowed) -> Hits:
        """Every allowed row scored against its stored vector. A few rows of many are decoded
        and scored in numpy; more, by a scan of every stored code with a row selector, where
        FAISS scores only the selected rows, straight from their codes (no decoding to floats):
        2x (flat) to 7x (ivf-sq8) faster at 20k of 100k rows, but the scan passes every row."""
        if allowed_count(allowed, self.ntotal) < self.ntotal * SCAN_SHARE:
            return self._decoded(query, k=k, allowed=allowed)
        keep_alive: list[Any] = []
        chosen = selector(allowed, self.ntotal, keep_alive)
        scanned, params = self._every_code(chosen)
        scores, ids = scanned.search(query, k, params=params)
        return hits(ids[0], scores[0])

    def _every_code(self, chosen: faiss.IDSelector | None) -> tuple[faiss.Index, Any]:
        """The index that holds every stored code, and search parameters that scan it all."""
        return self.faiss, faiss.SearchParameters(sel=chosen)

    def _decoded(self, query: Vectors, *, k: int, allowed: Allowed) -> Hits:
        ids = allowed_ids(allowed, self.ntotal)
        scores = np.empty(len(ids), dtype=np.float32)
        for start in range(0, len(ids), DECODE_CHUNK):
            chunk = ids[start : start + DECODE_CHUNK]
            scores[start : start + len(chunk)] = self._stored(chunk) @ query[0]
        return top(ids, scores, k)

    def _stored(self, ids: npt.NDArray[np.int64]) -> Vectors:
        full = self._reconstructible()
        if len(ids) and ids[-1] - ids[0] + 1 == len(ids):  # one run: one call
            return full.reconstruct_n(int(ids[0]), len(ids))
        return full.reconstruct_batch(ids)

    def vector(self, row: int) -> Vectors:
        return self._reconstructible().reconstruct(row).reshape(1, -1)

    def _reconstructible(self) -> faiss.Index:
        return self.faiss

    def serialised(self) -> npt.NDArray[np.uint8]:
        return faiss.serialize_index(self.faiss)

    def sidecars(self) -> dict[str, Parts]:
        return {}

    def coarse_quantizer(self) -> faiss.Index | None:
        return None


class FlatIndex(FaissIndex):
    kind = "flat"


class HnswIndex(FaissIndex):
    kind = "hnsw"
    approximate = True

    def _params(self, chosen: faiss.IDSelector | None, k: int) -> Any:
        return faiss.SearchParametersHNSW(sel=chosen, efSearch=max(HNSW_EF_SEARCH, 2 * k))

    def _every_code(self, chosen: faiss.IDSelector | None) -> tuple[faiss.Index, Any]:
        # The graph's vectors sit in a flat index of their own, in row order.
        return faiss.downcast_index(self.faiss.storage), faiss.SearchParameters(sel=chosen)


class IvfSq8Index(FaissIndex):
    """IVF lists of 8-bit scalar codes."""

    kind = "ivf-sq8"
    approximate = True

    def __init__(self, faiss_index: faiss.Index) -> None:
        super().__init__(scan_lists_in_parallel(faiss_index))

    def _params(self, chosen: faiss.IDSelector | None, k: int) -> Any:
        return faiss.SearchParametersIVF(sel=chosen, nprobe=IVF_NPROBE)

    def _every_code(self, chosen: faiss.IDSelector | None) -> tuple[faiss.Index, Any]:
        every = faiss.extract_index_ivf(self.faiss).nlist  # every list probed: nothing missed
        return self.faiss, faiss.SearchParametersIVF(sel=chosen, nprobe=every)

    def _reconstructible(self) -> faiss.Index:
        return with_direct_map(self.faiss)

    def coarse_quantizer(self) -> faiss.Index | None:
        return faiss.extract_index_ivf(self.faiss).quantizer


class RefinedIvfIndex(IvfSq8Index):
    """Older "ivfpq" builds: IVF-PQ with a refine stage of float vectors, served as ivf-sq8."""

    def _params(self, chosen: faiss.IDSelector | None, k: int) -> Any:
        ivf = super()._params(chosen, k)
        return faiss.IndexRefineSearchParameters(k_factor=REFINE_K_FACTOR, base_index_params=ivf)

    def _reconstructible(self) -> faiss.Index:
        return self.faiss  # the refine stage holds the vectors themselves

    def _every_code(self, chosen: faiss.IDSelector | None) -> tuple[faiss.Index, Any]:
        refine = faiss.downcast_index(self.faiss.refine_index)
        return refine, faiss.SearchParameters(sel=chosen)


def with_direct_map(index: faiss.Index) -> faiss.Index:
    """``index``, able to ``reconstruct`` by id. IVF indexes need a direct map for that (8 bytes
    a vector, not stored in the file): built on the first call that needs one, not at load."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        with _DIRECT_MAP_LOCK:
            if ivf.direct_map.type == faiss.DirectMap.NoMap:
                ivf.make_direct_map()
    return index


def scan_lists_in_parallel(index: faiss.Index) -> faiss.Index:
    """``index``, set to scan one query's probed lists on every core.

    FAISS's default spreads a batch of queries over the cores, and the service searches one query
    at a time, so a query used one core. At 10M images (√n lists, ~200k codes scanned) that was
    15 ms a query; scanning the lists on both cores here gives 8.7 ms (docs/scale.md).
    """
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.parallel_mode = PARALLEL_OVER_LISTS
    return index
