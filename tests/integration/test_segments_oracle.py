"""Search over a build with segments, on every index kind: the top-k is brute force over the
build's live rows and the segments' rows, inside folders and prefixes exactly (and over the
whole index exactly for flat, within recall for the approximate kinds).

The expected view is kept here from what was published (keys added, deleted, overwritten, with
their vectors), not read back from the service's own bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts.photos import Photo
from image_search.config import get_settings
from image_search.index.overlay import MARGIN_MAX
from image_search.serve.service import get_service
from tests.support.photo_filters import matches
from tests.support.segments import add_segment, copy_bucket
from tests.support.service import make_api, point_at_index
from tests.support.synthetic import DIM, items, photo
from tests.support.vectors import clustered

KINDS = ["flat", "hnsw", "ivf-sq8", "ivf-pq"]
MIN_RECALL = 0.9


class Expected:
    """The view as published: live key → vector (None: the build's stored vector)."""

    def __init__(self) -> None:
        self.live: dict[str, np.ndarray | None] = {item.key: None for item in items()}

    def apply(self, bucket: str, adds: dict[str, np.ndarray], deletes: list[str]) -> None:
        add_segment(bucket, adds=adds, deletes=deletes, photos=photo)
        for key in deletes:
            self.live.pop(key, None)
        for key, vector in adds.items():
            self.live[key] = vector / np.linalg.norm(vector)


def publish_segments(bucket: str) -> Expected:
    """Adds across folders and into a new one, deletes enough of beta to need a selector (and a
    few elsewhere: a margin), then overwrites of build rows and of added rows."""
    rng = np.random.default_rng(7)
    expected = Expected()
    base = sorted(expected.live)
    beta = [key for key in base if key.startswith("beta/")]
    others = [key for key in base if key.startswith(("alpha/", "delta/"))]
    deletes = list(rng.choice(beta, MARGIN_MAX + 100, replace=False))
    deletes += list(rng.choice(others, 30, replace=False))
    folders = ["alpha", "beta", "delta", "gamma", "epsilon"]
    keys = [f"{folders[i % 5]}/{'sub/' if i % 2 else ''}new_{i:04d}.jpg" for i in range(300)]
    vectors = clustered(len(keys), dim=DIM, seed=11)
    expected.apply(bucket, dict(zip(keys, vectors, strict=True)), deletes)
    survivors = [key for key in base if key in expected.live]
    replaced = list(rng.choice(survivors, 20, replace=False)) + keys[:10]
    fresh = clustered(len(replaced), dim=DIM, seed=12)
    expected.apply(bucket, dict(zip(replaced, fresh, strict=True)), replaced + keys[10:20])
    return expected


@pytest.fixture(scope="module", params=KINDS)
def published(request, synthetic) -> tuple[str, str, Expected]:  # type: ignore[no-untyped-def]
    bucket = copy_bucket(synthetic(request.param), prefix="index/")
    return bucket, request.param, publish_segments(bucket)


@pytest.fixture
def api(published, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    bucket, _, _ = published
    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path)
    yield make_api()
    get_settings.cache_clear()
    get_service.cache_clear()


def vectors_of(expected: Expected, keys: list[str]) -> np.ndarray:
    """The expected vectors: a segment's as published, a build row's as its index stores it."""
    base = get_service().current().base
    return np.vstack(
        [
            base.index.vector(base.metadata.rows[key])[0] if vector is None else vector
            for key in keys
            for vector in [expected.live[key]]
        ]
    )


def brute_force(
    expected: Expected,
    query: np.ndarray,
    k: int,
    starts: str = "",
    filters: dict[str, object] | None = None,
) -> list[str]:
    keys = sorted(
        key
        for key in expected.live
        if key.startswith(starts) and (filters is None or kept(key, filters))
    )
    scores = vectors_of(expected, keys) @ query
    return [keys[at] for at in np.argsort(-scores, kind="stable")[:k]]


def kept(key: str, filters: dict[str, object]) -> bool:
    """Whether the filters keep ``key``'s photo: the fields every key was published with."""
    fields = photo(key)
    return fields is not None and matches(Photo.of_document(fields, size=1), filters)


def hit_keys(answer) -> list[str]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 200, answer.text
    return [hit["key"] for hit in answer.json()]


SCOPES = [
    ({"folder": "alpha"}, "alpha/"),
    ({"folder": "delta"}, "delta/"),
    ({"folder": "beta"}, "beta/"),
    ({"folder": "epsilon"}, "epsilon/"),  # a folder only the segments hold
    ({"prefix": "delta/sub/"}, "delta/sub/"),
    ({"folder": "beta", "prefix": "beta/sub/"}, "beta/sub/"),
    ({"prefix": "gamma/sub/new_"}, "gamma/sub/new_"),
]


def test_inside_folders_and_prefixes_the_top_k_is_exact(api, published) -> None:  # type: ignore[no-untyped-def]
    _, _, expected = published
    query = "a dog on a beach"
    vector = get_service().embedder.embed_texts([query])[0]
    for where, starts in SCOPES:
        answer = api.post("/image_search/search", json={"query": query, "k": 10, **where})
        assert hit_keys(answer) == brute_force(expected, vector, 10, starts), where


def test_over_the_whole_index_the_top_k_is_brute_force_within_recall(api, published) -> None:  # type: ignore[no-untyped-def]
    _, kind, expected = published
    health = api.get("/health").json()
    assert (health["segments"], health["count"]) == (2, len(expected.live))
    for seed in range(3):
        similar_to = sorted(expected.live)[seed * 997]
        answer = api.post("/image_search/similar", json={"key": similar_to, "k": 20, "folder": "*"})
        found = hit_keys(answer)
        wanted = brute_force(expected, vectors_of(expected, [similar_to])[0], 21)
        wanted = [key for key in wanted if key != similar_to][:20]
        if kind == "flat":
            assert found == wanted
        else:
            assert len(set(found) & set(wanted)) / 20 >= MIN_RECALL


FILTERS: list[dict[str, object]] = [
    {"taken_after": "2017-03-01", "taken_before": "2019-08-31T18:00"},
    {"camera": "canon eos r5", "orientation": "landscape"},
]


def test_filters_keep_the_true_top_k_among_the_live_rows_that_match(api, published) -> None:  # type: ignore[no-untyped-def]
    _, _, expected = published
    query = "a dog on a beach"
    vector = get_service().embedder.embed_texts([query])[0]
    for where, starts in SCOPES[:4]:
        for filters in FILTERS:
            body = {"query": query, "k": 10, "filters": filters, **where}
            answer = api.post("/image_search/search", json=body)
            wanted = brute_force(expected, vector, 10, starts, filters)
            assert hit_keys(answer) == wanted, (where, filters)
