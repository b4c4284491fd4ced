"""FAISS search against a brute-force oracle, inside and outside folder ranges."""

from __future__ import annotations

import numpy as np
import pytest

from image_search.index import faiss_index as index
from image_search.index import ivf_pq, kinds
from image_search.index.search_index import SearchIndex
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
def built_types(ann_data: np.ndarray) -> dict[str, SearchIndex]:
    return {kind: index.build(ann_data, index_type=kind) for kind in TYPES}


def test_flat_search_equals_brute_force() -> None:
    vectors = clustered(2000)
    built = index.build(vectors, index_type="flat")
    for row in (0, 17, 1999):
        hits = built.search(vectors[row], k=10)
        assert hits.ids == oracle(vectors, vectors[row], 10, [(0, 2000)])
        assert hits.ids[0] == row and hits.scores[0] == pytest.approx(1.0, abs=1e-5)


def test_folder_ranges_return_the_true_top_k_inside_them() -> None:
    vectors = clustered(3000)
    built = index.build(vectors, index_type="flat")
    query = vectors[5]  # its nearest neighbours are mostly outside the range below
    ranges = [(2500, 2520), (100, 110)]
    hits = built.search(query, k=25, allowed=ranges)
    assert hits.ids == oracle(vectors, query, 25, ranges)
    assert all(2500 <= i < 2520 or 100 <= i < 110 for i in hits.ids)


def test_k_larger_than_the_range_returns_the_whole_range() -> None:
    built = index.build(clustered(100), index_type="flat")
    assert len(built.search(clustered(1, seed=9)[0], k=50, allowed=[(10, 13)]).ids) == 3


@pytest.mark.parametrize("kind", ["hnsw", "ivf-sq8", "ivf-pq"])
def test_ann_indexes_are_never_short_inside_a_small_folder(kind: str, built_types) -> None:
    built = built_types[kind]
    assert built.kind == kind
    query = clustered(1, dim=32, seed=3)[0]
    end = built.ntotal
    hits = built.search(query, k=10, allowed=[(end - 10, end)])
    assert sorted(hits.ids) == list(range(end - 10, end))
    assert hits.scores == sorted(hits.scores, reverse=True)
    # Recall outside the fallback is the benchmark's business (bench/), not a unit test's.


def test_serialisation_round_trip_keeps_results() -> None:
    vectors = clustered(500)
    built = index.build(vectors, index_type="hnsw")
    loaded = index.from_bytes(built.serialised().tobytes())
    assert loaded.search(vectors[3], k=5) == built.search(vectors[3], k=5)
    np.testing.assert_allclose(loaded.vector(3)[0], vectors[3], atol=1e-6)


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
    assert built.kind == "ivf-sq8"


# ---- loading from a file, every type --------------------------------------------------------


def reopened(built: SearchIndex, tmp_path) -> SearchIndex:  # type: ignore[no-untyped-def]
    """``built`` written and read back memory-mapped, as a build publishes and loads it; ivf-pq's
    re-rank codes are fetched by range from their file as queries need them."""
    path = tmp_path / "index.bin"
    path.write_bytes(built.serialised().tobytes())
    sidecars = built.sidecars()
    if not sidecars:
        return index.open_local(path)
    codes = b"".join(bytes(part) for part in sidecars[ivf_pq.CODES])
    (tmp_path / "layout.npz").write_bytes(b"".join(sidecars[ivf_pq.LAYOUT]))
    files = index.RerankFiles(
        layout=tmp_path / "layout.npz",
        codes=tmp_path / "codes.u8",
        fetch=lambda start, end: codes[start:end],
    )
    return index.open_local(path, rerank_files=files)


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_reads_back_memory_mapped_with_the_same_answers(
    kind: str, ann_data, built_types, tmp_path
) -> None:
    built = built_types[kind]
    assert built.kind == kind
    loaded = reopened(built, tmp_path)
    assert (loaded.ntotal, loaded.dim) == ann_data.shape
    for row in (0, 777, len(ann_data) - 1):
        query = ann_data[row]
        assert loaded.search(query, k=10) == built.search(query, k=10)
        ranges = [(100, 160), (20_000, 20_010)]
        assert loaded.search(query, k=5, allowed=ranges) == built.search(query, k=5, allowed=ranges)


@pytest.mark.parametrize("kind", ["ivf-sq8", "ivf-pq"])
def test_a_loaded_ivf_index_scans_one_querys_lists_on_every_core(
    kind: str, ann_data, built_types, tmp_path
) -> None:
    """The service searches one query at a time: FAISS's default parallelism (over queries) would
    leave all but one core idle, so loaded IVF indexes split a query's lists between threads,
    and answer exactly as a one-thread scan does, folder ranges included."""
    import faiss

    loaded = reopened(built_types[kind], tmp_path)
    ivf = faiss.extract_index_ivf(loaded.faiss)
    assert ivf.parallel_mode == kinds.PARALLEL_OVER_LISTS
    query, ranges = ann_data[42], [(0, 9_000), (15_000, 20_500)]
    parallel = loaded.search(query, k=10), loaded.search(query, k=10, allowed=ranges)
    ivf.parallel_mode = 0
    assert (
        loaded.search(query, k=10),
        loaded.search(query, k=10, allowed=ranges),
    ) == (parallel)


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_gives_back_a_stored_vector_for_similar(
    kind: str, ann_data, built_types, tmp_path
) -> None:
    loaded = reopened(built_types[kind], tmp_path)
    for row in (3, 12_345):
        vector = loaded.vector(row)[0]
        # Exact for flat and hnsw, within 8-bit quantisation for the IVF types.
        np.testing.assert_allclose(vector, ann_data[row], atol=0.02)
        assert loaded.search(vector, k=1).ids == [row]


@pytest.mark.parametrize("kind", TYPES)
def test_exact_is_brute_force_over_the_stored_vectors_for_every_type(
    kind: str, ann_data, built_types, tmp_path
) -> None:
    """What a filter's matches are scored with: every allowed row, against what ``vector``
    gives back (the codes the index holds), whatever the kind; read back memory-mapped."""
    loaded = reopened(built_types[kind], tmp_path)
    # Few rows of many are decoded and scored; more, by a scan of every code with a selector.
    for count in (200, 3000):
        rows = np.sort(np.random.default_rng(count).choice(len(ann_data), count, replace=False))
        stored = np.vstack([loaded.vector(int(row)) for row in rows])
        for query in clustered(3, dim=32, seed=11):
            scores = stored @ query
            order = np.argsort(-scores, kind="stable")[:20]
            found = loaded.exact(query, k=20, allowed=rows)
            assert found.ids == rows[order].tolist()
            assert found.scores == pytest.approx(scores[order].tolist(), abs=1e-5)
    assert sorted(loaded.exact(query, k=10, allowed=[(7, 10)]).ids) == [7, 8, 9]
    assert loaded.exact(query, k=10, allowed=rows[:0]).ids == []


def test_ivf_indexes_build_their_direct_map_only_when_similar_needs_it(ann_data, tmp_path) -> None:
    import faiss

    loaded = reopened(index.build(ann_data, index_type="ivf-sq8"), tmp_path)
    ivf = faiss.extract_index_ivf(loaded.faiss)
    assert ivf.direct_map.type == faiss.DirectMap.NoMap
    loaded.search(clustered(1, dim=32, seed=4)[0], k=10)
    assert ivf.direct_map.type == faiss.DirectMap.NoMap
    loaded.vector(5)
    assert ivf.direct_map.type == faiss.DirectMap.Array


@pytest.mark.parametrize("kind", TYPES)
def test_folder_ranges_stay_exact_in_small_ranges_for_every_type(
    kind: str, ann_data, built_types
) -> None:
    built = built_types[kind]
    query = ann_data[42]
    for ranges in ([(20_480, 20_500)], [(7, 12), (19_990, 20_003)]):
        hits = built.search(query, k=10, allowed=ranges)
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
    found = [set(built.search(q, k=10).ids) for q in queries]
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
    (tmp_path / "old.bin").write_bytes(faiss.serialize_index(old).tobytes())
    loaded = index.open_local(tmp_path / "old.bin")
    assert loaded.kind == "ivf-sq8"  # what builds labelled "ivfpq" are served as
    assert loaded.search(vectors[9], k=3).ids[0] == 9
    np.testing.assert_allclose(loaded.vector(9)[0], vectors[9], atol=1e-6)
    assert sorted(loaded.search(vectors[0], k=10, allowed=[(5, 8)]).ids) == [5, 6, 7]
    assert sorted(loaded.exact(vectors[0], k=10, allowed=np.array([5, 7, 900])).ids) == [5, 7, 900]


def test_auto_picks_ivf_pq_past_its_threshold() -> None:
    assert index.choose_type("auto", index.PQ_MIN) == "ivf-sq8"
    assert index.choose_type("auto", index.PQ_MIN + 1) == "ivf-pq"
    assert index.choose_type("ivf-pq", 100) == "flat"
