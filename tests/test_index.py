"""FAISS search against a brute-force oracle, inside and outside folder ranges."""

from __future__ import annotations

import numpy as np
import pytest

from image_search.index import faiss_index as index
from image_search.model.vectors import normalise


def clustered(count: int, dim: int = 32, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(16, dim))
    return normalise(centres[rng.integers(0, 16, count)] + 0.3 * rng.normal(size=(count, dim)))


def oracle(
    vectors: np.ndarray, query: np.ndarray, k: int, ranges: list[tuple[int, int]]
) -> list[int]:
    ids = np.concatenate([np.arange(a, b) for a, b in ranges])
    scores = vectors[ids] @ query
    return [int(i) for i in ids[np.argsort(-scores, kind="stable")[:k]]]


def test_flat_search_equals_brute_force() -> None:
    vectors = clustered(2000)
    built = index.build(vectors, index_type="flat")
    for row in (0, 17, 1999):
        hits = index.search(built, vectors[row], k=10)
        assert hits.ids == oracle(vectors, vectors[row], 10, [(0, 2000)])
        assert hits.ids[0] == row and hits.scores[0] == pytest.approx(1.0, abs=1e-5)


def test_folder_ranges_return_the_true_top_k_inside_them() -> None:
    vectors = clustered(3000)
    built = index.build(vectors, index_type="flat")
    query = vectors[5]  # its nearest neighbours are mostly outside the range below
    ranges = [(2500, 2520), (100, 110)]
    hits = index.search(built, query, k=25, ranges=ranges)
    assert hits.ids == oracle(vectors, query, 25, ranges)
    assert all(2500 <= i < 2520 or 100 <= i < 110 for i in hits.ids)


def test_k_larger_than_the_range_returns_the_whole_range() -> None:
    built = index.build(clustered(100), index_type="flat")
    assert len(index.search(built, clustered(1, seed=9)[0], k=50, ranges=[(10, 13)]).ids) == 3


@pytest.mark.parametrize("kind", ["hnsw", "ivf-sq8"])
def test_ann_indexes_are_never_short_inside_a_small_folder(kind: str) -> None:
    vectors = clustered(25_000, dim=32)
    built = index.build(vectors, index_type=kind)
    assert index.kind_of(built) == kind
    query = vectors[0]
    hits = index.search(built, query, k=10, ranges=[(24_990, 25_000)])
    assert sorted(hits.ids) == list(range(24_990, 25_000))
    assert hits.scores == sorted(hits.scores, reverse=True)
    # Recall outside the fallback is the benchmark's business (bench/), not a unit test's.


def test_serialisation_round_trip_keeps_results() -> None:
    vectors = clustered(500)
    built = index.build(vectors, index_type="hnsw")
    loaded = index.from_bytes(index.to_bytes(built))
    assert index.search(loaded, vectors[3], k=5) == index.search(built, vectors[3], k=5)
    np.testing.assert_allclose(index.vector(loaded, 3)[0], vectors[3], atol=1e-6)


def test_auto_type_follows_the_threshold() -> None:
    assert index.choose_type("auto", index.FLAT_MAX) == "flat"
    assert index.choose_type("auto", index.FLAT_MAX + 1) == "ivf-sq8"
    assert index.choose_type("ivf-sq8", 100) == "flat"  # too few vectors to train
    assert index.choose_type("hnsw", 100) == "hnsw"


def test_ivfpq_is_an_alias_of_ivf_sq8_in_settings_builds_and_old_metadata(monkeypatch) -> None:
    from image_search.config import Settings, canonical_index_type

    monkeypatch.setenv("IMAGE_SEARCH_INDEX_TYPE", "ivfpq")
    assert Settings(bucket="some-bucket").index_type == "ivf-sq8"
    assert index.choose_type("ivfpq", index.FLAT_MAX + 1) == "ivf-sq8"
    assert canonical_index_type("ivfpq") == "ivf-sq8" == canonical_index_type("ivf-sq8")
    built = index.build(clustered(index.IVF_MIN), index_type="ivfpq")
    assert index.kind_of(built) == "ivf-sq8"
