"""ivf-pq: PQ candidates re-ranked by 8-bit codes, and its sidecar files opened again.

Small synthetic vectors (a few thousand, 16-d) in a small IVF-PQ (4-bit codes train in well under
a second; faiss_index.build's own 8-bit PQ takes tens of seconds to train at any size): enough rows
for the PQ path and a selector. How build() lays the codes out and recall at scale are
tests/index/test_faiss_index.py's and bench's.
"""

from __future__ import annotations

import io
from pathlib import Path

import faiss
import numpy as np
import pytest

from image_search.index import faiss_index, ivf_pq, kinds, rerank
from image_search.index.search_index import SearchIndex
from tests.support.vectors import clustered, one_faiss_thread

COUNT, DIM = 5000, 16


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(COUNT, dim=DIM).astype(np.float32)


@pytest.fixture(scope="module")
def built(vectors: np.ndarray) -> ivf_pq.IvfPqIndex:
    """An IVF-PQ over ``vectors`` with its re-rank codes laid out by list, as build() does."""
    base = faiss.index_factory(DIM, "IVF32,PQ4x4", faiss.METRIC_INNER_PRODUCT)
    faiss.downcast_index(faiss.extract_index_ivf(base)).do_polysemous_training = False
    with one_faiss_thread():
        base.train(vectors[:2000])
        base.add(vectors)
    bounds = rerank.train_bounds(vectors[:2000])
    layout = rerank.layout_of(faiss.extract_index_ivf(base), bounds)
    codes = np.empty((COUNT, DIM), dtype=np.uint8)
    codes[layout.positions] = rerank.encode(vectors, bounds)
    return ivf_pq.IvfPqIndex(base, rerank.Rerank(layout, codes))


def joined(parts: list[bytes | memoryview]) -> bytes:
    return b"".join(bytes(part) for part in parts)


def reopened(built: SearchIndex, folder: Path) -> SearchIndex:
    """``built`` as the loader opens a published build: the FAISS file and the layout local, the
    codes fetched by byte range from the published codes file."""
    (folder / "index.bin").write_bytes(built.serialised().tobytes())
    sidecars = built.sidecars()
    (folder / "layout.npz").write_bytes(joined(sidecars[ivf_pq.LAYOUT]))
    codes_file = joined(sidecars[ivf_pq.CODES])
    files = faiss_index.RerankFiles(
        layout=folder / "layout.npz",
        codes=folder / "codes.u8",
        fetch=lambda start, end: codes_file[start:end],
    )
    return faiss_index.open_local(folder / "index.bin", rerank_files=files)


def test_sidecars_are_the_codes_as_npy_and_a_layout_pointing_past_its_header(
    built, tmp_path: Path
) -> None:
    sidecars = built.sidecars()
    assert set(sidecars) == {ivf_pq.CODES, ivf_pq.LAYOUT}
    codes_file = joined(sidecars[ivf_pq.CODES])
    codes = np.load(io.BytesIO(codes_file), allow_pickle=False)
    np.testing.assert_array_equal(codes, built.rerank.codes)
    assert codes.shape == (COUNT, DIM) and codes.dtype == np.uint8
    (tmp_path / "layout.npz").write_bytes(joined(sidecars[ivf_pq.LAYOUT]))
    layout, offset = rerank.load_layout(tmp_path / "layout.npz")
    assert codes_file[offset:] == built.rerank.codes.tobytes()
    np.testing.assert_array_equal(layout.positions, built.rerank.layout.positions)


def test_sidecars_opened_again_answer_as_the_index_in_memory(
    built, vectors: np.ndarray, tmp_path: Path
) -> None:
    loaded = reopened(built, tmp_path)
    assert (loaded.kind, loaded.ntotal, loaded.dim) == ("ivf-pq", COUNT, DIM)
    # More rows than EXACT_RANGE: the PQ path, with a selector; fewer: scored from the codes.
    wide = [(0, 3000), (3500, COUNT)]
    many_rows = np.flatnonzero(np.arange(COUNT) % 10).astype(np.int64)
    assert min(4500, len(many_rows)) > kinds.EXACT_RANGE
    few_rows = np.arange(0, COUNT, 7, dtype=np.int64)
    for query in (vectors[0], vectors[COUNT - 1], clustered(1, dim=DIM, seed=9)[0]):
        for allowed in (None, wide, [(10, 40)], many_rows, few_rows):
            assert loaded.search(query, k=10, allowed=allowed) == built.search(
                query, k=10, allowed=allowed
            )
    for row in (0, 1234, COUNT - 1):
        np.testing.assert_array_equal(loaded.vector(row), built.vector(row))


def test_hits_are_scored_by_the_8bit_codes_best_first(built, vectors: np.ndarray) -> None:
    query = vectors[42]
    hits = built.search(query, k=10)
    assert hits.ids[0] == 42
    rescored = built.rerank.scores(np.array(hits.ids, dtype=np.int64), query)
    np.testing.assert_allclose(hits.scores, rescored, rtol=1e-6)
    assert hits.scores == sorted(hits.scores, reverse=True)
    # Within 8-bit quantisation of the exact scores.
    np.testing.assert_allclose(hits.scores, vectors[hits.ids] @ query, atol=0.02)


def test_a_small_allowed_set_is_the_exact_top_k_of_its_codes(built, vectors: np.ndarray) -> None:
    allowed = np.sort(np.random.default_rng(3).choice(COUNT, size=300, replace=False))
    query = vectors[5]
    scores = built.rerank.scores(allowed, query)
    expected = allowed[np.argsort(-scores, kind="stable")[:10]].tolist()
    assert built.search(query, k=10, allowed=allowed).ids == expected


def test_vector_is_the_decoded_code_and_the_coarse_quantizer_holds_the_lists(
    built, vectors: np.ndarray
) -> None:
    vector = built.vector(77)
    assert vector.shape == (1, DIM)
    np.testing.assert_allclose(vector[0], vectors[77], atol=0.02)
    quantizer = built.coarse_quantizer()
    assert quantizer is not None
    assert quantizer.ntotal == len(built.rerank.layout.list_starts) - 1
