"""Synthetic float32 vectors with structure, for index tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np

from image_search.index.search_index import SearchIndex
from image_search.model.vectors import normalise


def clustered(count: int, dim: int = 32, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(16, dim))
    return normalise(centres[rng.integers(0, 16, count)] + 0.3 * rng.normal(size=(count, dim)))


def stored(index: SearchIndex, count: int) -> np.ndarray:
    """The first ``count`` vectors ``index`` holds, as it gives them back."""
    return np.vstack([index.vector(row) for row in range(count)])


@contextmanager
def one_faiss_thread() -> Iterator[None]:
    """FAISS on one thread meanwhile: training a tiny index on OpenMP's threads costs seconds on
    a busy machine (threads spinning at each barrier: 2-4 s against 0.06 s measured for a
    5,000-vector IVF-PQ) for no gain at this size."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
