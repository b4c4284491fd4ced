"""FAISS indexes over unit vectors (inner product = cosine), searched within folder id ranges."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from image_search.config import canonical_index_type
from image_search.index import rerank
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
# Past this many vectors ``auto`` picks ivf-pq. Measured at 1M (bench scale, docs/scale.md): a
# cold start fetches 138 bytes an image before its first answer instead of ivf-sq8's 563, for
# recall@10 0.97 instead of 0.98. At 500k ivf-sq8's download (~280 MB) is the most of a 3 s cold
# start worth spending on that recall.
PQ_MIN = 500_000
# ivf-pq: 64-byte PQ codes (8 dimensions a byte at 512-d) find candidates; this many per result
# are re-ranked with 8-bit codes (index/rerank.py). Measured on bench/'s clustered vectors
# (docs/scale.md): the PQ order is what loses recall as N grows. 10 / 20 / 40 candidates a result
# give recall@10 0.897 / 0.951 / 0.969 at 1M, and 10 / 20 / 40 / 80 give 0.813 / 0.924 / 0.964 /
# 0.971 at 3M (the 8-bit codes' ceiling), whatever the nprobe. At 10M the probed lists matter
# too: nprobe 8 / 12 / 16 give 0.940 / 0.947 / 0.952 at 5.9 / 8.1 / 9.2 ms a query on 2 cores;
# 12 keeps the 10 ms target with a margin.
PQ_BYTES = 64
PQ_NPROBE = 12
RERANK_FACTOR = 80
# Vectors are added (and their re-rank codes computed) this many at a time, so a build's working
# memory stays flat however large the collection.
ADD_CHUNK = 200_000
# Folder searches over at most this many rows score every row (exact) on the approximate types.
EXACT_RANGE = 4096
# FAISS's parallel_mode that splits one query's inverted lists between threads.
PARALLEL_OVER_LISTS = 1
# read_index flags: IVF lists, flat codes and HNSW storage are mapped from the file rather than
# copied into memory; only the pages a search touches are read.
MMAP = faiss.IO_FLAG_MMAP_IFC

Ranges = list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Hits:
    """Ids (into the index) and cosine scores, best first."""

    ids: list[int]
    scores: list[float]


class Reranked:
    """The ivf-pq index: an IVF-PQ index for candidates, 8-bit codes to re-rank them."""

    def __init__(self, base: faiss.Index, codes: rerank.Rerank) -> None:
        self.base = base
        self.rerank = codes

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal)

    @property
    def d(self) -> int:
        return int(self.base.d)


Index = faiss.Index | Reranked


def choose_type(requested: str, count: int) -> str:
    requested = canonical_index_type(requested)
    if requested == "auto":
        return "flat" if count <= FLAT_MAX else "ivf-sq8" if count <= PQ_MIN else "ivf-pq"
    if requested in ("ivf-sq8", "ivf-pq") and count < IVF_MIN:
        LOG.warning("%s needs at least %d vectors; using flat for %d", requested, IVF_MIN, count)
        return "flat"
    return requested


def build(vectors: Vectors, *, index_type: str) -> Index:
    """An index over ``vectors`` whose ids are the row numbers."""
    count, dim = vectors.shape
    index = faiss.index_factory(
        dim, _factory_string(index_type, count, dim), faiss.METRIC_INNER_PRODUCT
    )
    sample = None
    if not index.is_trained:
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        if isinstance(ivf, faiss.IndexIVFPQ):
            # Polysemous training reorders the PQ centroids for Hamming filtering, which this
            # search never uses; it was 95% of the training time (100 s of 101 at 20k vectors).
            ivf.do_polysemous_training = False
        sample = _training_sample(vectors, limit=ivf.nlist * IVF_TRAINING_PER_LIST)
        index.train(sample)
    for start in range(0, count, ADD_CHUNK):
        index.add(np.ascontiguousarray(vectors[start : start + ADD_CHUNK], dtype=np.float32))
    scan_lists_in_parallel(index)
    if canonical_index_type(index_type) != "ivf-pq":
        return index
    assert sample is not None
    return Reranked(index, _rerank_codes(index, vectors, rerank.train_bounds(sample)))


def _rerank_codes(index: faiss.Index, vectors: Vectors, bounds: np.ndarray) -> rerank.Rerank:
    layout = rerank.layout_of(faiss.extract_index_ivf(index), bounds)
    codes = _scratch((len(vectors), vectors.shape[1]))
    for start in range(0, len(vectors), ADD_CHUNK):
        chunk = np.asarray(vectors[start : start + ADD_CHUNK], dtype=np.float32)
        codes[layout.positions[start : start + len(chunk)]] = rerank.encode(chunk, bounds)
    return rerank.Rerank(layout, codes)


def _scratch(shape: tuple[int, int]) -> np.ndarray:
    """A uint8 array; past 1 GiB backed by an unnamed temporary file rather than memory."""
    if shape[0] * shape[1] <= 2**30:
        return np.empty(shape, dtype=np.uint8)
    import tempfile

    return np.memmap(tempfile.TemporaryFile(), dtype=np.uint8, mode="w+", shape=shape)


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
    if index_type == "ivf-pq":
        # sqrt(n) lists: half the k-means and assignment work of 2·sqrt(n), and candidates come
        # from fewer, larger lists, which is what the re-rank codes are fetched by.
        nlist = max(16, int(math.sqrt(count)))
        # PQ splits the vector into equal parts: the most parts up to PQ_BYTES that divide dim.
        parts = max(m for m in range(1, min(PQ_BYTES, dim) + 1) if dim % m == 0)
        return f"IVF{nlist},PQ{parts}"
    raise ValueError(f"unknown index type {index_type!r}")


def _training_sample(vectors: Vectors, *, limit: int) -> Vectors:
    if len(vectors) <= limit:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), size=limit, replace=False)
    return vectors[np.sort(rows)]


def kind_of(index: Index) -> str:
    if isinstance(index, Reranked):
        return "ivf-pq"
    if isinstance(index, faiss.IndexRefine | faiss.IndexIVF):
        return "ivf-sq8"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    return "flat"


def serialised(index: Index) -> np.ndarray:
    """The FAISS file's bytes (for ivf-pq, its IVF-PQ stage) as a uint8 array, not copied again."""
    return faiss.serialize_index(index.base if isinstance(index, Reranked) else index)


def to_bytes(index: Index) -> bytes:
    return serialised(index).tobytes()


def from_bytes(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def read(path: Path) -> faiss.Index:
    """The index in ``path``, memory-mapped: loading costs the same at any size. The file must
    stay in place while the index is used (deleting it is fine: the mapping keeps it alive)."""
    return scan_lists_in_parallel(faiss.read_index(str(path), MMAP))


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


_DIRECT_MAP_LOCK = threading.Lock()


def coarse_quantizer(index: Index) -> faiss.Index | None:
    """The IVF index's coarse quantiser (ivf-sq8, ivf-pq), or None for flat and hnsw."""
    base = index.base if isinstance(index, Reranked) else index
    ivf = faiss.try_extract_index_ivf(base)
    return None if ivf is None else ivf.quantizer


def _reconstructible(index: faiss.Index) -> faiss.Index:
    """``index``, able to ``reconstruct`` by id. IVF indexes need a direct map for that (8 bytes
    a vector, not stored in the file): built on the first call that needs one, not at load."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and not isinstance(index, faiss.IndexRefine):
        with _DIRECT_MAP_LOCK:
            if ivf.direct_map.type == faiss.DirectMap.NoMap:
                ivf.make_direct_map()
    return index


def vector(index: Index, row: int) -> Vectors:
    """The stored vector of ``row`` (as the index's codes hold it), for "similar to this"."""
    if isinstance(index, Reranked):
        return index.rerank.vectors(np.array([row]))
    return _reconstructible(index).reconstruct(row).reshape(1, -1)


def search(index: Index, query: Vectors, *, k: int, ranges: Ranges | None = None) -> Hits:
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
    if not whole and available <= EXACT_RANGE and kind_of(index) != "flat":
        # An approximate index only looks where the query's neighbours are likely; inside a
        # small folder that can miss rows of the true top-k. Scoring every row is cheap there.
        return _exact(index, query, k=k, ranges=ranges)
    keep_alive: list[Any] = []
    # A selector costs a check per scored row (bench/: ~1 ms of 18 on a flat 100k scan), so a
    # search of the whole index goes without one.
    selector = None if whole else _selector(ranges, keep_alive)
    if isinstance(index, Reranked):
        hits = _reranked(index, query, k=k, available=available, selector=selector)
    else:
        scores, ids = index.search(query, k, params=_search_params(index, selector, k))
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


def _reranked(
    index: Reranked, query: Vectors, *, k: int, available: int, selector: faiss.IDSelector | None
) -> Hits:
    wanted = min(available, k * RERANK_FACTOR)
    params = faiss.SearchParametersIVF(sel=selector, nprobe=PQ_NPROBE)
    _, ids = index.base.search(query, wanted, params=params)
    rows = ids[0][ids[0] >= 0]
    return _top(rows, index.rerank.scores(rows, query), k)


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


def _exact(index: Index, query: Vectors, *, k: int, ranges: Ranges) -> Hits:
    ids = np.concatenate([np.arange(start, end) for start, end in ranges])
    if isinstance(index, Reranked):
        return _top(ids, index.rerank.scores(ids, query), k)
    full = _reconstructible(index)
    vectors = np.vstack([full.reconstruct_n(start, end - start) for start, end in ranges])
    return _top(ids, vectors @ query[0], k)


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> Hits:
    order = np.argsort(-scores, kind="stable")[:k]
    return _hits(ids[order], scores[order])


def _hits(ids: np.ndarray, scores: np.ndarray) -> Hits:
    found = ids >= 0  # FAISS pads with -1 when fewer than k rows qualify
    return Hits([int(i) for i in ids[found]], [float(s) for s in scores[found]])
