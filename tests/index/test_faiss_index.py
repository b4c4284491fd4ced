"""FAISS search against a brute-force oracle, inside and outside folder ranges."""

from __future__ import annotations

import numpy as np
import pytest

from image_search.index import faiss_index as index
from tests.support.vectors import clustered


def oracle(
    vectors: np.ndarray, query: np.ndarray, k: int, ranges: list[tuple[int, int]]
) -> list[int]:
    ids = np.concatenate([np.arange(a, b) for a, b in ranges])
    scores = vectors[ids] @ query
    return [int(i) for i in ids[np.argsort(-scores, kind="stable")[:k]]]


TYPES = ["flat", "hnsw", "ivf-sq8", "ivf-pq"]


@pytest.fixture(scope="module")
def ann_data() -> np.ndarray:
    return clustered(index.IVF_MIN + 500, dim=32)


@pytest.fixture(scope="module")
def built_types(ann_data: np.ndarray) -> dict[str, index.Index]:
    return {kind: index.build(ann_data, index_type=kind) for kind in TYPES}


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


@pytest.mark.parametrize("kind", ["hnsw", "ivf-sq8", "ivf-pq"])
def test_ann_indexes_are_never_short_inside_a_small_folder(kind: str, built_types) -> None:
    built = built_types[kind]
    assert index.kind_of(built) == kind
    query = clustered(1, dim=32, seed=3)[0]
    end = built.ntotal
    hits = index.search(built, query, k=10, ranges=[(end - 10, end)])
    assert sorted(hits.ids) == list(range(end - 10, end))
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


# ---- loading from a file, every type --------------------------------------------------------


def reopened(built: index.Index, tmp_path) -> index.Index:  # type: ignore[no-untyped-def]
    """``built`` written and read back memory-mapped; ivf-pq keeps its in-memory re-rank codes."""
    path = tmp_path / "index.bin"
    path.write_bytes(index.to_bytes(built))
    loaded = index.read(path)
    return index.Reranked(loaded, built.rerank) if isinstance(built, index.Reranked) else loaded


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_reads_back_memory_mapped_with_the_same_answers(
    kind: str, ann_data, built_types, tmp_path
) -> None:
    built = built_types[kind]
    assert index.kind_of(built) == kind
    loaded = reopened(built, tmp_path)
    assert (loaded.ntotal, loaded.d) == ann_data.shape
    for row in (0, 777, len(ann_data) - 1):
        query = ann_data[row]
        assert index.search(loaded, query, k=10) == index.search(built, query, k=10)
        ranges = [(100, 160), (20_000, 20_010)]
        assert index.search(loaded, query, k=5, ranges=ranges) == index.search(
            built, query, k=5, ranges=ranges
        )


@pytest.mark.parametrize("kind", ["ivf-sq8", "ivf-pq"])
def test_a_loaded_ivf_index_scans_one_querys_lists_on_every_core(
    kind: str, ann_data, built_types, tmp_path
) -> None:
    """The service searches one query at a time: FAISS's default parallelism (over queries) would
    leave all but one core idle, so loaded IVF indexes split a query's lists between threads,
    and answer exactly as a one-thread scan does, folder ranges included."""
    import faiss

    loaded = reopened(built_types[kind], tmp_path)
    ivf = faiss.extract_index_ivf(loaded.base if isinstance(loaded, index.Reranked) else loaded)
    assert ivf.parallel_mode == index.PARALLEL_OVER_LISTS
    query, ranges = ann_data[42], [(0, 9_000), (15_000, 20_500)]
    parallel = index.search(loaded, query, k=10), index.search(loaded, query, k=10, ranges=ranges)
    ivf.parallel_mode = 0
    assert (
        index.search(loaded, query, k=10),
        index.search(loaded, query, k=10, ranges=ranges),
    ) == (parallel)


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_gives_back_a_stored_vector_for_similar(
    kind: str, ann_data, built_types, tmp_path
) -> None:
    loaded = reopened(built_types[kind], tmp_path)
    for row in (3, 12_345):
        vector = index.vector(loaded, row)[0]
        # Exact for flat and hnsw, within 8-bit quantisation for the IVF types.
        np.testing.assert_allclose(vector, ann_data[row], atol=0.02)
        assert index.search(loaded, vector, k=1).ids == [row]


def test_ivf_indexes_build_their_direct_map_only_when_similar_needs_it(ann_data, tmp_path) -> None:
    import faiss

    loaded = reopened(index.build(ann_data, index_type="ivf-sq8"), tmp_path)
    ivf = faiss.extract_index_ivf(loaded)
    assert ivf.direct_map.type == faiss.DirectMap.NoMap
    index.search(loaded, clustered(1, dim=32, seed=4)[0], k=10)
    assert ivf.direct_map.type == faiss.DirectMap.NoMap
    index.vector(loaded, 5)
    assert ivf.direct_map.type == faiss.DirectMap.Array


@pytest.mark.parametrize("kind", TYPES)
def test_folder_ranges_stay_exact_in_small_ranges_for_every_type(
    kind: str, ann_data, built_types
) -> None:
    built = built_types[kind]
    query = ann_data[42]
    for ranges in ([(20_480, 20_500)], [(7, 12), (19_990, 20_003)]):
        hits = index.search(built, query, k=10, ranges=ranges)
        expected = oracle(ann_data, query, 10, ranges)
        if kind in ("flat", "hnsw"):
            assert hits.ids == expected
        else:  # scored from 8-bit codes: the true top-k but for near-ties at its edge
            assert_top_k_within(hits.ids, ann_data, query, ranges, tolerance=0.01)
        assert hits.scores == sorted(hits.scores, reverse=True)


def assert_top_k_within(
    ids: list[int], vectors: np.ndarray, query: np.ndarray, ranges, *, tolerance: float
) -> None:  # type: ignore[no-untyped-def]
    """``ids`` are the true top-k of ``ranges`` except where exact scores differ < tolerance."""
    inside = np.concatenate([np.arange(a, b) for a, b in ranges])
    exact = dict(zip(inside.tolist(), (vectors[inside] @ query).tolist(), strict=True))
    edge = sorted(exact.values(), reverse=True)[len(ids) - 1]
    assert set(ids) <= set(exact)
    assert all(exact[row] >= edge - tolerance for row in ids)
    assert {row for row, score in exact.items() if score > edge + tolerance} <= set(ids)


def test_ivf_pq_recall_against_exact_search(ann_data, built_types) -> None:
    built = built_types["ivf-pq"]
    queries = clustered(50, dim=32, seed=7)
    found = [set(index.search(built, q, k=10).ids) for q in queries]
    exact = [set(oracle(ann_data, q, 10, [(0, len(ann_data))])) for q in queries]
    recall = np.mean([len(f & e) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.9


def test_an_old_ivfpq_build_with_a_refine_stage_still_loads(tmp_path) -> None:
    import faiss

    vectors = clustered(index.IVF_MIN, dim=32)
    old = faiss.index_factory(32, "IVF64,PQ8,RFlat", faiss.METRIC_INNER_PRODUCT)
    faiss.downcast_index(old.base_index).do_polysemous_training = False  # slow, beside the point
    old.train(vectors)
    old.add(vectors)
    loaded = reopened(old, tmp_path)
    assert index.kind_of(loaded) == "ivf-sq8"  # what builds labelled "ivfpq" are served as
    assert index.search(loaded, vectors[9], k=3).ids[0] == 9
    np.testing.assert_allclose(index.vector(loaded, 9)[0], vectors[9], atol=1e-6)
    assert sorted(index.search(loaded, vectors[0], k=10, ranges=[(5, 8)]).ids) == [5, 6, 7]


def test_auto_picks_ivf_pq_past_its_threshold() -> None:
    assert index.choose_type("auto", index.PQ_MIN) == "ivf-sq8"
    assert index.choose_type("auto", index.PQ_MIN + 1) == "ivf-pq"
    assert index.choose_type("ivf-pq", 100) == "flat"
