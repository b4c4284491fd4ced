"""The row sets a search may be limited to (None, ranges, rows) and the top-k helpers every kind
shares; FAISS's own selectors are checked against the allowed ids they stand for."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import pytest

from image_search.index.search_index import (
    Allowed,
    allowed_count,
    allowed_ids,
    hits,
    selector,
    top,
)

NTOTAL = 50
ROWS = np.array([0, 3, 4, 17, 49], dtype=np.int64)
CASES: list[Allowed] = [None, [], [(5, 9)], [(0, 2), (10, 13), (40, 50)], ROWS, ROWS[:0]]


@pytest.mark.parametrize("allowed", CASES)
def test_allowed_ids_and_count_agree(allowed: Allowed) -> None:
    ids = allowed_ids(allowed, NTOTAL)
    assert ids.dtype == np.int64
    assert allowed_count(allowed, NTOTAL) == len(ids)
    assert ids.tolist() == sorted(set(ids.tolist()))


def test_allowed_ids_spell_out_ranges_and_rows() -> None:
    assert allowed_ids(None, 4).tolist() == [0, 1, 2, 3]
    assert allowed_ids([(1, 3), (7, 9)], NTOTAL).tolist() == [1, 2, 7, 8]
    assert allowed_ids(ROWS, NTOTAL).tolist() == ROWS.tolist()


@pytest.mark.parametrize("allowed", CASES)
def test_a_selector_scores_exactly_the_allowed_rows(allowed: Allowed) -> None:
    vectors = np.random.default_rng(0).normal(size=(NTOTAL, 8)).astype(np.float32)
    flat = faiss.IndexFlatIP(8)
    flat.add(vectors)
    keep_alive: list[Any] = []
    chosen = selector(allowed, NTOTAL, keep_alive)
    if allowed is None:
        assert chosen is None
        return
    _, ids = flat.search(vectors[:1], NTOTAL, params=faiss.SearchParameters(sel=chosen))
    found = sorted(int(i) for i in ids[0] if i >= 0)
    assert found == allowed_ids(allowed, NTOTAL).tolist()


def test_top_is_best_first_with_ties_in_id_order() -> None:
    ids = np.array([9, 4, 7, 2, 5])
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.9], dtype=np.float32)
    found = top(ids, scores, 4)
    assert found.ids == [4, 5, 9, 7]
    assert found.scores == pytest.approx([0.9, 0.9, 0.5, 0.5])
    assert top(ids, scores, 10).ids == [4, 5, 9, 7, 2]


@pytest.mark.parametrize("k", [1, 10, 999, 5000, 6000])
def test_top_of_many_scores_is_a_stable_sort_with_ties(k: int) -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 50, 5000).astype(np.float32)  # ties everywhere
    ids = rng.permutation(5000)
    order = np.argsort(-scores, kind="stable")[:k]
    found = top(ids, scores, k)
    assert found.ids == ids[order].tolist()
    assert found.scores == scores[order].tolist()


def test_hits_drop_faiss_padding() -> None:
    found = hits(np.array([3, -1, -1]), np.array([0.7, -np.inf, -np.inf]))
    assert (found.ids, found.scores) == ([3], [pytest.approx(0.7)])
    assert all(isinstance(i, int) for i in found.ids)
