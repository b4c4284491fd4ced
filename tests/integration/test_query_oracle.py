"""Combined queries on every index kind: the top-k is brute force over the stored vectors with
the same combination (inside folders and prefixes exactly; over the whole index exactly for flat
and within recall for the approximate kinds), and cursors page through it; with photo filters,
brute force over the matching rows (exactly up to serve.filters.EXACT_MATCHES of them; above it
exactly for flat and within recall for the approximate kinds)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts.photos import Photo
from tests.support.photo_filters import matches
from tests.support.service import make_api, point_at_index

KINDS = ["flat", "hnsw", "ivf-sq8", "ivf-pq"]
# Recall of the approximate kinds over the whole index (23k clustered 16-d vectors).
MIN_RECALL = 0.9


@pytest.fixture(scope="module", params=KINDS)
def published(request, synthetic) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return synthetic(request.param), request.param


@pytest.fixture
def api(published, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    bucket, _ = published
    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path)
    return make_api()


def loaded():  # type: ignore[no-untyped-def]
    from image_search.serve.service import get_service

    return get_service().current()


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).ravel()
    return vector / np.linalg.norm(vector)


def query_and_combination(folder: str) -> tuple[dict, np.ndarray, set[int]]:  # type: ignore[type-arg]
    """A query of texts and keys, positive and negative; its vector as the docs define it; the
    rows it names."""
    from image_search.serve.service import get_service

    build = loaded()
    catalog = build.metadata
    start, end = catalog.base.folders[folder]
    liked, disliked = start + 7, catalog.base.folders["beta"][0] + 11
    body = {
        "positive": [
            {"text": "a dog on a beach", "weight": 1.5},
            {"key": catalog.key(liked)},
        ],
        "negative": [
            {"text": "snow", "weight": 0.5},
            {"key": catalog.key(disliked), "weight": 0.3},
        ],
    }
    texts = get_service().embedder.embed_texts(["a dog on a beach", "snow"])
    total = (
        1.5 * unit(texts[0])
        + unit(build.index.vector(liked))
        - 0.5 * unit(texts[1])
        - 0.3 * unit(build.index.vector(disliked))
    )
    return body, unit(total), {liked, disliked}


def brute_force(rows: np.ndarray, vector: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    index = loaded().index
    scores = np.array([float(index.vector(int(row))[0] @ vector) for row in rows])
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(rows[i]) for i in order], [float(scores[i]) for i in order]


def rows_of(answer) -> list[int]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 200, answer.text
    catalog = loaded().metadata
    return [catalog.rows[hit["key"]] for hit in answer.json()["results"]]


SCOPES = [
    ({"folder": "alpha"}, "alpha/"),
    ({"folder": "delta"}, "delta/"),
    ({"folder": "beta"}, "beta/"),
    ({"prefix": "delta/sub/"}, "delta/sub/"),
    ({"folder": "beta", "prefix": "beta/sub/"}, "beta/sub/"),
]


def test_inside_folders_and_prefixes_the_top_k_is_exact(api) -> None:  # type: ignore[no-untyped-def]
    body, vector, named = query_and_combination("delta")
    catalog = loaded().metadata
    for where, starts in SCOPES:
        answer = api.post("/image_search/query", json={**body, **where, "k": 10})
        rows = np.array(
            [r for r in range(len(catalog)) if catalog.key(r).startswith(starts) and r not in named]
        )
        expected, scores = brute_force(rows, vector, 10)
        assert rows_of(answer) == expected, where
        got = [hit["score"] for hit in answer.json()["results"]]
        assert got == pytest.approx(scores, abs=1e-5)


def test_over_the_whole_index_the_top_k_is_brute_force_within_recall(api, published) -> None:  # type: ignore[no-untyped-def]
    _, kind = published
    body, vector, named = query_and_combination("gamma")
    answer = api.post("/image_search/query", json={**body, "k": 20})
    everything = np.array([r for r in range(loaded().index.ntotal) if r not in named])
    expected, _ = brute_force(everything, vector, 20)
    found = rows_of(answer)
    if kind == "flat":
        assert found == expected
    else:
        assert len(set(found) & set(expected)) / 20 >= MIN_RECALL


def test_pages_are_disjoint_in_rank_order_and_follow_the_ranking(api, published) -> None:  # type: ignore[no-untyped-def]
    _, kind = published
    body, vector, named = query_and_combination("gamma")
    body = {**body, "folder": "gamma", "k": 25}
    walked: list[int] = []
    scores: list[float] = []
    ranks: list[int] = []
    cursor = None
    for _ in range(4):
        answer = api.post("/image_search/query", json={**body, "cursor": cursor})
        walked += rows_of(answer)
        scores += [hit["score"] for hit in answer.json()["results"]]
        ranks += [hit["rank"] for hit in answer.json()["results"]]
        cursor = answer.json()["next_cursor"]
        assert cursor
    assert len(set(walked)) == len(walked) == 100
    assert ranks == list(range(1, 101))
    assert scores == sorted(scores, reverse=True)
    start, end = loaded().metadata.base.folders["gamma"]
    rows = np.array([r for r in range(start, end) if r not in named])
    expected, _ = brute_force(rows, vector, 100)
    if kind == "flat":
        assert walked == expected
    else:
        assert len(set(walked) & set(expected)) / 100 >= MIN_RECALL


# A date range with a time, a camera under another spelling, a shape and a size: each keeps
# fewer than EXACT_MATCHES rows (scored exactly); WIDE keeps more over the whole index.
FILTERS = [
    {"taken_after": "2017-03-01", "taken_before": "2019-08-31T18:00"},
    {"camera": "canon eos r5", "orientation": "landscape"},
    {"orientation": "portrait", "min_height": 1900},
]
WIDE = {"min_width": 1}


@lru_cache(maxsize=1)
def photos_and_keys(build_id: str) -> tuple[list[Photo], list[str]]:
    """Every row's photo and key, read once per build (a module reads one build per kind)."""
    catalog = loaded().metadata
    assert catalog.build_id == build_id and catalog.photos is not None
    return [catalog.photos.photo(row) for row in range(len(catalog))], list(catalog.keys)


def photo_rows(asked: dict[str, object], *, starts: str, named: set[int]) -> np.ndarray:
    photos, keys = photos_and_keys(loaded().metadata.build_id)
    return np.array(
        [
            row
            for row, (photo, key) in enumerate(zip(photos, keys, strict=True))
            if row not in named and key.startswith(starts) and matches(photo, asked)
        ],
        dtype=np.int64,
    )


def test_with_filters_the_top_k_is_brute_force_over_the_matching_rows(api) -> None:  # type: ignore[no-untyped-def]
    from image_search.serve.filters import EXACT_MATCHES

    body, vector, named = query_and_combination("delta")
    for where, starts in [*SCOPES, ({}, "")]:
        for asked in [*FILTERS, WIDE]:
            rows = photo_rows(asked, starts=starts, named=named)
            if len(rows) > EXACT_MATCHES:
                continue  # the next test
            answer = api.post("/image_search/query", json={**body, **where, "filters": asked})
            expected, scores = brute_force(rows, vector, 10)
            assert rows_of(answer) == expected, (where, asked)
            got = [hit["score"] for hit in answer.json()["results"]]
            assert got == pytest.approx(scores, abs=1e-5)


def test_a_filter_keeping_most_rows_searches_the_index_within_recall(api, published) -> None:  # type: ignore[no-untyped-def]
    from image_search.serve.filters import EXACT_MATCHES

    _, kind = published
    body, vector, named = query_and_combination("gamma")
    rows = photo_rows(WIDE, starts="", named=named)
    assert len(rows) > EXACT_MATCHES  # the index's own search, with a row selector
    answer = api.post("/image_search/query", json={**body, "k": 20, "filters": WIDE})
    expected, _ = brute_force(rows, vector, 20)
    found = rows_of(answer)
    assert set(found) <= set(rows.tolist())
    if kind == "flat":
        assert found == expected
    else:
        assert len(set(found) & set(expected)) / 20 >= MIN_RECALL


def test_filtered_pages_are_disjoint_and_follow_the_filtered_ranking(api, published) -> None:  # type: ignore[no-untyped-def]
    _, kind = published
    body, vector, named = query_and_combination("gamma")
    asked = FILTERS[1]
    body = {**body, "folder": "gamma", "k": 25, "filters": asked}
    walked: list[int] = []
    cursor = None
    for _ in range(3):
        answer = api.post("/image_search/query", json={**body, "cursor": cursor})
        walked += rows_of(answer)
        cursor = answer.json()["next_cursor"]
        assert cursor
    expected, _ = brute_force(photo_rows(asked, starts="gamma/", named=named), vector, 75)
    assert walked == expected
