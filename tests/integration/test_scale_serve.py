"""Every index type served through the API from a build published to S3 (moto): health, text
search, similar by key, and folder and prefix searches exact against brute force over the vectors
the index stores. Old builds (metadata JSON only, no compact catalog) still serve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts.catalog import FILES as CATALOG_FILES
from image_search.artefacts.location import beside
from image_search.storage import s3
from tests.support.buckets import put
from tests.support.service import make_api, point_at_index
from tests.support.synthetic import FOLDERS, publish_synthetic

# "… (json)": builds as published before the compact catalog existed.
KINDS = ["flat", "hnsw", "ivf-sq8", "ivf-pq", "flat (json)", "ivf-sq8 (json)"]


@pytest.fixture(scope="module", params=KINDS)
def published(request, synthetic, tiny_model: Path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(bucket, kind): a build of that kind published through ``artefacts.publish``."""
    kind = request.param
    if not kind.endswith("(json)"):
        return synthetic(kind), kind
    # A build as published before the compact catalog: a bucket of its own, the catalog removed.
    bucket, pointer = publish_synthetic(kind.split()[0], model=tiny_model)
    client = s3.make_client()
    assert pointer.catalog_key is not None
    gone = [{"Key": beside(pointer.catalog_key, name)} for name in CATALOG_FILES]
    client.delete_objects(Bucket=bucket, Delete={"Objects": gone})
    old = pointer.model_copy(update={"catalog_key": None})
    put(client, bucket, "index/current.json", old.model_dump_json().encode())
    return bucket, kind


@pytest.fixture
def api(published, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    bucket, _ = published
    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path)
    return make_api()


def service():  # type: ignore[no-untyped-def]
    from image_search.serve.service import get_service

    return get_service()


def oracle(rows: np.ndarray, query: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """The top ``k`` of ``rows`` by brute force over the vectors the served index holds."""
    loaded = service().current()
    stored = np.vstack([loaded.index.vector(int(row)) for row in rows])
    scores = stored @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(rows[i]) for i in order], [float(scores[i]) for i in order]


def rows_of(hits: list[dict]) -> list[int]:  # type: ignore[type-arg]
    catalog = service().current().metadata
    return [catalog.rows[hit["key"]] for hit in hits]


def assert_same_top(hits: list[dict], rows: list[int], scores: list[float]) -> None:  # type: ignore[type-arg]
    assert rows_of(hits) == rows
    assert [hit["score"] for hit in hits] == pytest.approx(scores, abs=1e-5)


def test_the_build_loads_and_answers_text_search(api, published) -> None:  # type: ignore[no-untyped-def]
    _, kind = published
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["count"] == sum(FOLDERS.values())
    loaded = service().current()
    assert loaded.index.kind == kind.split()[0]
    answer = api.post("/image_search/search", json={"query": "a red car", "folder": "*", "k": 10})
    assert answer.status_code == 200
    hits = answer.json()
    assert len(hits) == 10 and len(set(rows_of(hits))) == 10
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    if kind == "flat":
        query = service().embedder.embed_texts(["a red car"])[0]
        assert_same_top(hits, *oracle(np.arange(loaded.index.ntotal), query, 10))


@pytest.mark.parametrize("folder", ["alpha", "delta", "beta"])
def test_folder_search_is_exact_against_brute_force(api, folder: str) -> None:  # type: ignore[no-untyped-def]
    query = "a dog on a beach"
    answer = api.post("/image_search/search", json={"query": query, "folder": folder, "k": 10})
    assert answer.status_code == 200
    hits = answer.json()
    assert {hit["folder"] for hit in hits} == {folder}
    start, end = service().current().metadata.base.folders[folder]
    vector = service().embedder.embed_texts([query])[0]
    assert_same_top(hits, *oracle(np.arange(start, end), vector, 10))


def test_prefix_search_is_exact_against_brute_force(api) -> None:  # type: ignore[no-untyped-def]
    query = "mountains"
    answer = api.post("/image_search/search", json={"query": query, "prefix": "delta/sub/", "k": 7})
    assert answer.status_code == 200
    catalog = service().current().metadata
    rows = np.array(
        [row for row in range(len(catalog)) if catalog.key(row).startswith("delta/sub/")]
    )
    vector = service().embedder.embed_texts([query])[0]
    assert_same_top(answer.json(), *oracle(rows, vector, 7))


def test_similar_by_key_finds_the_stored_neighbours_in_a_folder(api) -> None:  # type: ignore[no-untyped-def]
    catalog = service().current().metadata
    start, end = catalog.base.folders["delta"]
    row = start + 17
    answer = api.post(
        "/image_search/similar", json={"key": catalog.key(row), "k": 5, "folder": "delta"}
    )
    assert answer.status_code == 200
    vector = service().current().index.vector(row)[0]
    others = np.array([other for other in range(start, end) if other != row])
    assert_same_top(answer.json(), *oracle(others, vector, 5))


def test_similar_by_key_over_the_whole_index_ranks_its_own_neighbours(api) -> None:  # type: ignore[no-untyped-def]
    catalog = service().current().metadata
    row = catalog.base.folders["gamma"][0] + 1234
    answer = api.post(
        "/image_search/similar", json={"key": catalog.key(row), "k": 5, "folder": "*"}
    )
    assert answer.status_code == 200
    hits = answer.json()
    assert len(hits) == 5 and row not in rows_of(hits)
    # Its nearest stored neighbour, by brute force, is found by every type.
    vector = service().current().index.vector(row)[0]
    everything = np.array([other for other in range(len(catalog)) if other != row])
    best, _ = oracle(everything, vector, 1)
    assert best[0] in rows_of(hits)
