"""FAISS indexes over unit vectors (inner product = cosine), searched within folder id ranges."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from image_search.config import canonical_index_type
from image_search.model.vectors import Vectors

LOG = logging.getLogger(__name__)

# Up to this many vectors ``auto`` keeps exact search: a flat scan costs about 4 ms at 20k x 512
# on 2 cores. Past it the scan grows linearly (17-20 ms at 100k) while the IVF index answers in
# under a millisecond at recall@10 0.99 (bench/), so ``auto`` switches (see README).
FLAT_MAX = 20_000
# The IVF index needs enough vectors to train its coarse quantiser.
IVF_MIN = 20_000
HNSW_M = 32
HNSW_EF_SEARCH = 128
# Measured on 1M clustered 512-d vectors (bench/): recall@10 against exact search is flat from
# nprobe 8 upwards (the 8-bit codes set the ceiling); 32 leaves a margin for harder data at
# about a millisecond per query.
IVF_NPROBE = 32
# FAISS wants at least 39 training points a list and samples down to 256; 50 keeps k-means to
# 100k points at 1M vectors (2,000 lists), so training costs no more than adding the vectors.
IVF_TRAINING_PER_LIST = 50
# Older "ivfpq" builds can hold IVF-PQ with a refine stage: searched with these parameters.
REFINE_K_FACTOR = 16

Ranges = list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Hits:
    """Ids (into the index) and cosine scores, best first."""

    ids: list[int]
    scores: list[float]


def choose_type(requested: str, count: int) -> str:
    requested = canonical_index_type(requested)
    if requested == "auto":
        return "flat" if count <= FLAT_MAX else "ivf-sq8"
    if requested == "ivf-sq8" and count < IVF_MIN:
        LOG.warning("ivf-sq8 needs at least %d vectors; using flat for %d", IVF_MIN, count)
        return "flat"
    return requested


def build(vectors: Vectors, *, index_type: str) -> faiss.Index:
    """An index over ``vectors`` whose ids are the row numbers."""
    count, dim = vectors.shape
    index = faiss.index_factory(
        dim, _factory_string(index_type, count, dim), faiss.METRIC_INNER_PRODUCT
    )
    if not index.is_trained:
        lists = faiss.extract_index_ivf(index).nlist
        index.train(_training_sample(vectors, limit=lists * IVF_TRAINING_PER_LIST))
    index.add(vectors)
    _enable_reconstruct(index)
    return index


def _factory_string(index_type: str, count: int, dim: int) -> str:
    index_type = canonical_index_type(index_type)
    if index_type == "flat":
        return "Flat"
    if index_type == "hnsw":
        return f"HNSW{HNSW_M}"
    if index_type == "ivf-sq8":
        # 2·sqrt(n) lists: at 200k, recall@10 0.98 against 0.99 for 4·sqrt(n), for half the
        # build (k-means, then assigning every vector to a list).
        nlist = max(16, int(2 * math.sqrt(count)))
        # 8-bit scalar codes beat PQ + SQ8 refine on every measure at 512-d (bench/): recall@10
        # 0.98 vs 0.97, 13x faster to build, a quarter of the memory of float vectors (512 MiB
        # per million), no codebooks to train.
        return f"IVF{nlist},SQ8"
    raise ValueError(f"unknown index type {index_type!r}")


def _training_sample(vectors: Vectors, *, limit: int) -> Vectors:
    if len(vectors) <= limit:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), size=limit, replace=False)
    return vectors[np.sort(rows)]


def kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexRefine | faiss.IndexIVF):
        return "ivf-sq8"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    return "flat"


def to_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes) -> faiss.Index:
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    _enable_reconstruct(index)
    return index


def _enable_reconstruct(index: faiss.Index) -> None:
    # A direct map lets ``reconstruct`` answer "similar to this image" by id and feed the exact
    # fallback; FAISS does not serialise it, so every load builds it again (8 bytes a vector).
    if isinstance(index, faiss.IndexIVF):
        index.make_direct_map()
    elif isinstance(index, faiss.IndexRefine):
        faiss.extract_index_ivf(index.base_index).make_direct_map()


def vector(index: faiss.Index, row: int) -> Vectors:
    return index.reconstruct(row).reshape(1, -1)


def search(index: faiss.Index, query: Vectors, *, k: int, ranges: Ranges | None = None) -> Hits:
    """The top ``k`` rows for one query, only among ``ranges`` when given.

    The id selector makes FAISS score only rows inside the ranges, so a folder search returns
    that folder's own top-k rather than a global top-k filtered down (which can come back short).
    """
    query = query.reshape(1, -1)
    whole = ranges is None
    if ranges is None:
        ranges = [(0, index.ntotal)]
    available = sum(end - start for start, end in ranges)
    k = min(k, available)
    if k <= 0:
        return Hits([], [])
    keep_alive: list[Any] = []
    # A selector costs a check per scored row (bench/: ~1 ms of 18 on a flat 100k scan), so a
    # search of the whole index goes without one.
    params = _search_params(index, None if whole else _selector(ranges, keep_alive), k)
    scores, ids = index.search(query, k, params=params)
    hits = _hits(ids[0], scores[0])
    if len(hits.ids) < k:
        # Graph and IVF searches can run out of candidates inside a small range; fall back to
        # an exact scan of the range so the answer is never short.
        return _exact(index, query, k=k, ranges=ranges)
    return hits


def _selector(ranges: Ranges, keep_alive: list[Any]) -> faiss.IDSelector:
    # SWIG does not keep the parts of a composite selector alive: hold them until the search ends.
    selector: faiss.IDSelector | None = None
    for start, end in ranges:
        part = faiss.IDSelectorRange(start, end)
        keep_alive.append(part)
        selector = part if selector is None else faiss.IDSelectorOr(selector, part)
        keep_alive.append(selector)
    assert selector is not None
    return selector


def _search_params(index: faiss.Index, selector: faiss.IDSelector | None, k: int) -> Any:
    kind = kind_of(index)
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, 2 * k))
    if kind == "ivf-sq8":
        ivf = faiss.SearchParametersIVF(sel=selector, nprobe=IVF_NPROBE)
        if not isinstance(index, faiss.IndexRefine):
            return ivf
        return faiss.IndexRefineSearchParameters(k_factor=REFINE_K_FACTOR, base_index_params=ivf)
    return faiss.SearchParameters(sel=selector)


def _exact(index: faiss.Index, query: Vectors, *, k: int, ranges: Ranges) -> Hits:
    ids = np.concatenate([np.arange(start, end) for start, end in ranges])
    vectors = np.vstack([index.reconstruct_n(start, end - start) for start, end in ranges])
    scores = vectors @ query[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return _hits(ids[order], scores[order])


def _hits(ids: np.ndarray, scores: np.ndarray) -> Hits:
    found = ids >= 0  # FAISS pads with -1 when fewer than k rows qualify
    return Hits([int(i) for i in ids[found]], [float(s) for s in scores[found]])
