"""Making and opening indexes: the one place that knows which class serves which FAISS index.

Everything downstream holds a ``SearchIndex`` (index/search_index.py) and never asks its kind.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from image_search.config import canonical_index_type
from image_search.index import rerank
from image_search.index.ivf_pq import IvfPqIndex
from image_search.index.kinds import (
    FaissIndex,
    FlatIndex,
    HnswIndex,
    IvfSq8Index,
    RefinedIvfIndex,
)
from image_search.index.search_index import SearchIndex
from image_search.model.vectors import Vectors

LOG = logging.getLogger(__name__)

# Up to this many vectors ``auto`` keeps exact search: a flat scan costs about 4 ms at 20k x 512
# on 2 cores. Past it the scan grows linearly (17-20 ms at 100k) while the IVF index answers in
# under a millisecond at recall@10 0.99 (bench/), so ``auto`` switches (see README).
FLAT_MAX = 20_000
# The IVF index needs enough vectors to train its coarse quantiser.
IVF_MIN = 20_000
HNSW_M = 32
# FAISS wants at least 39 training points a list and samples down to 256; 50 keeps k-means to
# 100k points at 1M vectors (2,000 lists), so training costs no more than adding the vectors.
IVF_TRAINING_PER_LIST = 50
# Past this many vectors ``auto`` picks ivf-pq. Measured at 1M (bench scale, docs/scale.md): a
# cold start fetches 138 bytes an image before its first answer instead of ivf-sq8's 563, for
# recall@10 0.97 instead of 0.98. At 500k ivf-sq8's download (~280 MB) is the most of a 3 s cold
# start worth spending on that recall.
PQ_MIN = 500_000
# ivf-pq's PQ codes: up to this many bytes a vector (8 dimensions a byte at 512-d).
PQ_BYTES = 64
# Vectors are added (and their re-rank codes computed) this many at a time, so a build's working
# memory stays flat however large the collection.
ADD_CHUNK = 200_000
# read_index flags: IVF lists, flat codes and HNSW storage are mapped from the file rather than
# copied into memory; only the pages a search touches are read.
MMAP = faiss.IO_FLAG_MMAP_IFC


def choose_type(requested: str, count: int) -> str:
    requested = canonical_index_type(requested)
    if requested == "auto":
        return "flat" if count <= FLAT_MAX else "ivf-sq8" if count <= PQ_MIN else "ivf-pq"
    if requested in ("ivf-sq8", "ivf-pq") and count < IVF_MIN:
        LOG.warning("%s needs at least %d vectors; using flat for %d", requested, IVF_MIN, count)
        return "flat"
    return requested


def build(vectors: Vectors, *, index_type: str) -> SearchIndex:
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
    if canonical_index_type(index_type) != "ivf-pq":
        return _wrap(index)
    assert sample is not None
    return IvfPqIndex(index, _rerank_codes(index, vectors, rerank.train_bounds(sample)))


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


def _wrap(index: faiss.Index) -> FaissIndex:
    """The class that serves a FAISS index read back from its file."""
    if isinstance(index, faiss.IndexRefine):
        return RefinedIvfIndex(index)
    if isinstance(index, faiss.IndexIVF):
        return IvfSq8Index(index)
    if isinstance(index, faiss.IndexHNSW):
        return HnswIndex(index)
    return FlatIndex(index)


Fetch = Callable[[int, int], bytes]  # byte range [start, end) of a published file → its bytes


@dataclass(frozen=True)
class RerankFiles:
    """Where an ivf-pq build's re-rank codes are: the layout file (local), and the codes, read
    by byte range from ``fetch`` into a local copy at ``codes`` as queries need them."""

    layout: Path
    codes: Path
    fetch: Fetch  # of the published codes file


def from_bytes(data: bytes) -> SearchIndex:
    """An index from its FAISS file's bytes (kept in memory)."""
    return _wrap(faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)))


def open_local(path: Path, *, rerank_files: RerankFiles | None = None) -> SearchIndex:
    """The index in ``path``, memory-mapped: loading costs the same at any size. The file must
    stay in place while the index is used (deleting it is fine: the mapping keeps it alive).

    With ``rerank_files`` it is ivf-pq: its codes arrive list by list as queries need them, then
    in the background (index/rerank.py).
    """
    stored = faiss.read_index(str(path), MMAP)
    if rerank_files is None:
        return _wrap(stored)
    layout, offset = rerank.load_layout(rerank_files.layout)

    def codes(start: int, end: int) -> bytes:
        return rerank_files.fetch(offset + start, offset + end)

    store = rerank.open_local(layout, path=rerank_files.codes, fetch=codes)
    store.fill_in_background()
    return IvfPqIndex(stored, store)
