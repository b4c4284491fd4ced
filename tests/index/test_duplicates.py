"""Near-duplicate groups against an oracle: every pair scored by brute force, joined by a plain
connected-components search."""

from __future__ import annotations

import numpy as np
import pytest

from image_search.index import duplicates, faiss_index
from image_search.model.vectors import normalise


def with_copies(count: int, *, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Distinct unit vectors, then copies of some of them at cosines from 0.90 to 1.0."""
    rng = np.random.default_rng(seed)
    base = normalise(rng.normal(size=(count, dim)))
    copies = []
    for row in rng.choice(count, size=count // 4, replace=False):
        for _ in range(int(rng.integers(1, 4))):
            noise = normalise(rng.normal(size=(1, dim)))[0]
            wanted = rng.uniform(0.90, 1.0)  # cos between copy and original
            copies.append(
                wanted * base[row] + np.sqrt(1 - wanted**2) * _orthogonal(noise, base[row])
            )
    vectors = np.vstack([base, np.array(copies)])
    return normalise(vectors[rng.permutation(len(vectors))]).astype(np.float32)


def _orthogonal(noise: np.ndarray, to: np.ndarray) -> np.ndarray:
    part = noise - (noise @ to) * to
    return part / np.linalg.norm(part)


def oracle(vectors: np.ndarray, min_score: float) -> list[list[int]]:
    """Connected components of the graph of pairs scoring ``min_score`` or more, size ≥ 2."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -1)
    linked = scores >= min_score
    seen: set[int] = set()
    groups = []
    for start in range(len(vectors)):
        if start in seen or not linked[start].any():
            continue
        group, todo = {start}, [start]
        while todo:
            row = todo.pop()
            for other in np.flatnonzero(linked[row]):
                if int(other) not in group:
                    group.add(int(other))
                    todo.append(int(other))
        seen |= group
        groups.append(sorted(group))
    return sorted(groups)


def rows(groups: list[duplicates.Group]) -> list[list[int]]:
    return sorted(group.rows for group in groups)


@pytest.mark.parametrize("min_score", [0.93, 0.97, 0.995])
def test_groups_are_the_connected_components_of_close_pairs(min_score: float) -> None:
    vectors = with_copies(400)
    groups = duplicates.find_groups(vectors, min_score=min_score)
    assert rows(groups) == oracle(vectors, min_score)
    for group in groups:
        assert len(group.edges) == len(group.rows) - 1  # a spanning tree
        assert all(score >= min_score for _, _, score in group.edges)


def test_splitting_at_a_higher_score_equals_finding_at_it() -> None:
    vectors = with_copies(400, seed=1)
    found = duplicates.find_groups(vectors, min_score=0.9)
    for higher in (0.92, 0.95, 0.98, 0.999):
        split = [part for group in found for part in duplicates.split(group, min_score=higher)]
        assert rows(split) == oracle(vectors, higher), higher


def test_each_member_keeps_its_best_match_and_the_group_its_best_pair() -> None:
    vectors = with_copies(300, seed=2)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -1)
    for group in duplicates.find_groups(vectors, min_score=0.9):
        inside = scores[np.ix_(group.rows, group.rows)]
        np.testing.assert_allclose(group.best(), inside.max(axis=1), atol=1e-5)
        assert group.score == pytest.approx(inside.max(), abs=1e-5)


def test_many_identical_copies_stay_one_group() -> None:
    # More copies than the neighbours kept per image: the spanning tree still joins them all.
    vectors = with_copies(200, seed=3)
    copies = np.repeat(vectors[:1], duplicates.MAX_NEIGHBOURS * 3, axis=0)
    groups = duplicates.find_groups(np.vstack([vectors, copies]), min_score=0.999)
    big = max(groups, key=lambda group: len(group.rows))
    assert big.rows[0] == 0 and len(big.rows) >= duplicates.MAX_NEIGHBOURS * 3 + 1


def test_distinct_vectors_make_no_group() -> None:
    rng = np.random.default_rng(4)
    assert duplicates.find_groups(normalise(rng.normal(size=(500, 64))), min_score=0.9) == []


@pytest.mark.parametrize("kind", ["ivf-sq8", "ivf-pq", "flat"])
def test_buckets_by_coarse_centroid_find_the_same_groups(monkeypatch, kind: str) -> None:
    # Above EXACT_MAX vectors are searched within buckets of their two nearest centroids: the
    # IVF index's own, or k-means' when the index has none. Copies this close share one.
    vectors = with_copies(3000, dim=64, seed=5)
    monkeypatch.setattr(duplicates, "EXACT_MAX", 1000)
    index = faiss_index.build(vectors, index_type=kind)
    if kind != "flat":  # both IVF types lend their coarse quantiser: no k-means of its own
        monkeypatch.setattr(duplicates.faiss, "Kmeans", None)
    groups = duplicates.find_groups(vectors, min_score=0.97, index=index)
    assert rows(groups) == oracle(vectors, 0.97)
