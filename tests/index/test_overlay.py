"""An index with rows added and deleted: the top-k is brute force over the live rows allowed."""

from __future__ import annotations

import numpy as np
import pytest

from image_search.index import faiss_index
from image_search.index.overlay import MARGIN_MAX, OverlayIndex
from image_search.index.search_index import Allowed, allowed_ids
from tests.support.vectors import clustered, stored

BASE, EXTRA, DIM = 2000, 300, 16


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    return clustered(BASE, dim=DIM, seed=1), clustered(EXTRA, dim=DIM, seed=2)


def overlay(kind: str, vectors, *, dead: int, seed: int = 0) -> OverlayIndex:  # type: ignore[no-untyped-def]
    base, extra = vectors
    rng = np.random.default_rng(seed)
    index = faiss_index.build(base, index_type=kind)
    live = rng.random(EXTRA) > 0.2
    gone = rng.choice(BASE, size=dead, replace=False)
    return OverlayIndex(index, dead=gone, extra=extra, extra_live=live)


def brute_force(view: OverlayIndex, query: np.ndarray, k: int, allowed: Allowed) -> list[int]:
    rows = allowed_ids(allowed, view.ntotal)
    base_rows = rows[rows < BASE]
    extra_rows = rows[rows >= BASE]
    live = np.concatenate(
        [np.setdiff1d(base_rows, view.dead), extra_rows[view.extra_live[extra_rows - BASE]]]
    )
    every = np.vstack([stored(view.base, BASE), view.extra])
    scores = every[live] @ query
    order = np.lexsort((live, -scores))[:k]
    return [int(row) for row in live[order]]


ALLOWED: list[Allowed] = [
    None,
    [(100, 400)],
    [(0, 50), (1500, BASE + 120)],  # into the added rows
    [(BASE + 10, BASE + 200)],  # added rows only
    np.array(sorted({3, 77, 400, 1999, BASE + 1, BASE + 5, BASE + 299}), dtype=np.int64),
]


@pytest.mark.parametrize("dead", [0, 40, MARGIN_MAX + 300])  # none, a margin, a selector
@pytest.mark.parametrize("at", range(len(ALLOWED)))
def test_the_top_k_is_brute_force_over_the_live_rows_allowed(vectors, dead: int, at: int) -> None:
    view = overlay("flat", vectors, dead=dead)
    allowed = ALLOWED[at]
    for seed in range(3):
        query = clustered(1, dim=DIM, seed=100 + seed)[0]
        found = view.search(query, k=25, allowed=allowed)
        assert found.ids == brute_force(view, query, 25, allowed)
        assert found.scores == sorted(found.scores, reverse=True)
        assert not set(found.ids) & set(view.dead.tolist())


def test_an_added_row_finds_itself_first_and_reads_back_exactly(vectors) -> None:
    view = overlay("hnsw", vectors, dead=10)
    row = BASE + int(np.flatnonzero(view.extra_live)[0])
    vector = view.vector(row)
    np.testing.assert_array_equal(vector[0], vectors[1][row - BASE])
    found = view.search(vector, k=3)
    assert found.ids[0] == row
    assert found.scores[0] == pytest.approx(1.0, abs=1e-5)


def test_nothing_added_or_deleted_is_the_base_search(vectors) -> None:
    base, _ = vectors
    index = faiss_index.build(base, index_type="flat")
    view = OverlayIndex(
        index,
        dead=np.zeros(0, dtype=np.int64),
        extra=np.zeros((0, DIM), dtype=np.float32),
        extra_live=np.zeros(0, dtype=bool),
    )
    query = base[5]
    assert view.search(query, k=10) == index.search(query, k=10)
    assert view.ntotal == BASE
