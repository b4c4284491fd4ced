"""ivf-pq's re-rank codes: faiss's 8-bit scalar codes, grouped by IVF list, fetched list by list.

Pure unit tests on small synthetic vectors: faiss's own ScalarQuantizer is the oracle for the
codes and their scores, the IVF index's own lists for the layout, and a counting ``fetch`` over
bytes in memory stands in for S3.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from image_search.index import rerank
from tests.support.vectors import clustered, one_faiss_thread

DIM = 16
NLIST = 12


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(600, dim=DIM).astype(np.float32)


@pytest.fixture(scope="module")
def quantizer(vectors: np.ndarray) -> faiss.ScalarQuantizer:
    sq = faiss.ScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_8bit)
    with one_faiss_thread():
        sq.train(vectors)
    return sq


@pytest.fixture(scope="module")
def ivf(vectors: np.ndarray) -> faiss.IndexIVFFlat:
    coarse = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIVFFlat(coarse, DIM, NLIST, faiss.METRIC_INNER_PRODUCT)
    with one_faiss_thread():
        index.train(vectors)
        index.add(vectors)
    return index


@pytest.fixture(scope="module")
def stored(vectors: np.ndarray, ivf: faiss.IndexIVFFlat) -> tuple[rerank.Layout, np.ndarray]:
    """The layout and the codes in list order, as faiss_index.build lays them out."""
    bounds = rerank.train_bounds(vectors)
    layout = rerank.layout_of(ivf, bounds)
    codes = np.empty((len(vectors), DIM), dtype=np.uint8)
    codes[layout.positions] = rerank.encode(vectors, bounds)
    return layout, codes


class CountingFetch:
    """Byte ranges of ``data``, recording every range asked."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def __call__(self, start: int, end: int) -> bytes:
        with self._lock:
            self.asked.append((start, end))
        return self.data[start:end]


def never(start: int, end: int) -> bytes:
    raise AssertionError(f"fetched [{start}, {end}) from a complete local copy")


def list_bytes(layout: rerank.Layout, lst: int) -> tuple[int, int]:
    starts = layout.list_starts
    return int(starts[lst]) * layout.dim, int(starts[lst + 1]) * layout.dim


# ---- the codes -----------------------------------------------------------------------------


def test_train_bounds_and_encode_equal_faiss_8bit_scalar_codes(vectors, quantizer) -> None:
    bounds = rerank.train_bounds(vectors)
    assert bounds.shape == (2, DIM) and bounds.dtype == np.float32
    np.testing.assert_array_equal(bounds.ravel(), faiss.vector_to_array(quantizer.trained))
    # Vectors it was not trained on, some beyond the trained range in both directions (clipped).
    others = np.vstack([clustered(50, dim=DIM, seed=5), 3 * vectors[:5], -3 * vectors[:5]])
    others = others.astype(np.float32)
    np.testing.assert_array_equal(rerank.encode(others, bounds), quantizer.compute_codes(others))
    assert {0, 255} <= set(np.unique(rerank.encode(others, bounds)).tolist())


def test_a_dimension_without_range_encodes_without_dividing_by_zero() -> None:
    bounds = np.array([[0.5, -1.0], [0.0, 2.0]], dtype=np.float32)  # dimension 0 is constant
    with np.errstate(all="raise"):
        codes = rerank.encode(np.array([[0.5, 1.0], [0.5, -1.0]], dtype=np.float32), bounds)
    np.testing.assert_array_equal(codes, [[0, 255], [0, 0]])


def test_scores_and_vectors_equal_faiss_decoded_vectors(vectors, quantizer, stored) -> None:
    layout, codes = stored
    store = rerank.Rerank(layout, codes)
    assert store.filled.is_set() and store.count == len(vectors)
    decoded = quantizer.decode(quantizer.compute_codes(vectors))
    rows = np.array([0, 5, 599, 17, 300], dtype=np.int64)
    for query in (vectors[3], clustered(1, dim=DIM, seed=11)[0].astype(np.float32)):
        np.testing.assert_allclose(store.scores(rows, query), decoded[rows] @ query, atol=1e-5)
    np.testing.assert_allclose(store.vectors(rows), decoded[rows], atol=1e-6)
    assert store.vectors(rows).dtype == np.float32


# ---- the layout ------------------------------------------------------------------------------


def test_layout_of_groups_rows_by_ivf_list_in_list_order(vectors, ivf, stored) -> None:
    layout, _ = stored
    _, assigned = ivf.quantizer.search(vectors, 1)
    sizes = np.bincount(assigned[:, 0], minlength=NLIST)
    np.testing.assert_array_equal(np.diff(layout.list_starts), sizes)
    assert layout.list_starts[0] == 0 and layout.list_starts[-1] == len(vectors)
    # Every row has its own position, inside its own list's run.
    assert sorted(layout.positions.tolist()) == list(range(len(vectors)))
    np.testing.assert_array_equal(layout.lists_of(layout.positions), assigned[:, 0])


def test_layout_round_trips_through_save_and_load(stored, tmp_path: Path) -> None:
    layout, _ = stored
    buffer = io.BytesIO()
    rerank.save_layout(layout, buffer, codes_offset=128)
    (tmp_path / "layout.npz").write_bytes(buffer.getvalue())
    loaded, offset = rerank.load_layout(tmp_path / "layout.npz")
    assert offset == 128
    np.testing.assert_array_equal(loaded.positions, layout.positions)
    np.testing.assert_array_equal(loaded.list_starts, layout.list_starts)
    np.testing.assert_array_equal(loaded.bounds, layout.bounds)
    assert loaded.bounds.dtype == np.float32 and loaded.dim == DIM


# ---- a local copy filled from S3 -------------------------------------------------------------


def test_a_query_fetches_only_the_lists_of_its_rows(stored, tmp_path: Path) -> None:
    layout, codes = stored
    fetch = CountingFetch(codes.tobytes())
    store = rerank.open_local(layout, path=tmp_path / "codes.u8", fetch=fetch)
    assert not store.filled.is_set()
    in_lists = layout.lists_of(layout.positions)
    rows = np.flatnonzero(np.isin(in_lists, [2, 7]))[::3].astype(np.int64)
    wanted = sorted({int(in_lists[row]) for row in rows})
    query = codes[0].astype(np.float32) / 255

    scores = store.scores(rows, query)

    assert sorted(fetch.asked) == [list_bytes(layout, lst) for lst in wanted]
    np.testing.assert_allclose(scores, rerank.Rerank(layout, codes).scores(rows, query), atol=1e-5)
    store.scores(rows[:2], query)  # lists already present: nothing fetched again
    assert len(fetch.asked) == len(wanted)
    assert not (tmp_path / "codes.u8").exists()  # not whole yet: still the private partial file


def test_fill_in_background_completes_renames_and_a_second_open_maps_it(
    stored, tmp_path: Path
) -> None:
    layout, codes = stored
    path = tmp_path / "codes.u8"
    fetch = CountingFetch(codes.tobytes())
    store = rerank.open_local(layout, path=path, fetch=fetch)
    store.scores(np.array([0], dtype=np.int64), codes[0].astype(np.float32))

    store.fill_in_background()

    assert store.filled.wait(timeout=30)
    assert path.read_bytes() == codes.tobytes()
    assert list(tmp_path.glob("*.partial")) == []
    # Everything was asked once: the query's list, then the rest in runs of missing lists.
    asked = sorted(fetch.asked)
    assert all(a[1] == b[0] for a, b in zip(asked, asked[1:], strict=False))
    assert (asked[0][0], asked[-1][1]) == (0, codes.size)
    assert len(asked) < NLIST  # the fill asks for runs, not one list a request

    again = rerank.open_local(layout, path=path, fetch=never)
    assert again.filled.is_set()
    rows = np.arange(len(codes), dtype=np.int64)
    query = codes[1].astype(np.float32) / 255
    np.testing.assert_array_equal(again.scores(rows, query), store.scores(rows, query))


def test_a_query_after_the_copy_is_whole_fetches_nothing(stored, tmp_path: Path) -> None:
    layout, codes = stored
    fetch = CountingFetch(codes.tobytes())
    store = rerank.open_local(layout, path=tmp_path / "codes.u8", fetch=fetch)
    every = np.arange(len(codes), dtype=np.int64)
    store.scores(every, codes[0].astype(np.float32))
    assert store.filled.is_set() and (tmp_path / "codes.u8").is_file()
    asked = len(fetch.asked)
    assert asked == sum(1 for lst in range(NLIST) if np.diff(layout.list_starts)[lst])
    store.scores(every, codes[0].astype(np.float32))
    assert len(fetch.asked) == asked


def test_a_truncated_local_copy_is_not_trusted(stored, tmp_path: Path) -> None:
    layout, codes = stored
    path = tmp_path / "codes.u8"
    path.write_bytes(codes.tobytes()[:-1])  # a copy cut short (a full disk, a killed process)
    fetch = CountingFetch(codes.tobytes())
    store = rerank.open_local(layout, path=path, fetch=fetch)
    assert not store.filled.is_set()
    store.scores(np.array([0], dtype=np.int64), codes[0].astype(np.float32))
    assert len(fetch.asked) == 1


def test_a_failed_background_fill_leaves_queries_fetching_their_lists(
    stored, tmp_path: Path
) -> None:
    layout, codes = stored
    data = codes.tobytes()
    fill_failed = threading.Event()

    def fetch(start: int, end: int) -> bytes:
        if threading.current_thread().name == "rerank-fill":
            fill_failed.set()
            raise OSError("S3 went away")
        return data[start:end]

    store = rerank.open_local(layout, path=tmp_path / "codes.u8", fetch=fetch)
    store.fill_in_background()
    assert fill_failed.wait(timeout=30)
    rows = np.arange(len(codes), dtype=np.int64)
    query = codes[2].astype(np.float32) / 255
    expected = rerank.Rerank(layout, codes).scores(rows, query)
    np.testing.assert_allclose(store.scores(rows, query), expected, atol=1e-5)
    assert store.filled.is_set()
