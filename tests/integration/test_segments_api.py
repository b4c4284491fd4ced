"""Segments served end to end: a real build on moto S3, segments published on it as ingest does
(``publish_segment``), and every route answering from the build with the segments applied.

An added image is found (by itself first), a deleted one is gone from every answer (no key, no
URL), an overwritten one answers with its new vector; rankings are checked against brute force
over the build's stored vectors and the segments' vectors.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from image_search.config import get_settings
from image_search.serve.service import get_service
from tests.integration.test_api import stored_vectors
from tests.integration.test_duplicates_api import ASTRONAUT, CAT, SCORE, copies
from tests.support.buckets import published_bucket
from tests.support.factories import encode, random_image
from tests.support.segments import add_segment, copy_bucket
from tests.support.service import make_api, point_at_index

POLL = 0.05


@pytest.fixture(scope="module")
def built(s3_endpoint: str, tiny_model: Path, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    cache = tmp_path_factory.mktemp("cache")
    return published_bucket(copies(), model=tiny_model, cache=cache, duplicate_score=SCORE)


@pytest.fixture
def bucket(built: str, tiny_model: Path, tmp_path: Path, monkeypatch) -> str:  # type: ignore[no-untyped-def,override]
    """A copy of the module's build (segments change it), served with a short poll."""
    copy = copy_bucket(built)
    monkeypatch.setenv("IMAGE_SEARCH_POLL_SECONDS", str(POLL))
    monkeypatch.setenv("IMAGE_SEARCH_DUPLICATE_SCORE", str(SCORE))
    point_at_index(monkeypatch, bucket=copy, model=tiny_model, cache=tmp_path)
    yield copy
    get_settings.cache_clear()
    get_service.cache_clear()


@pytest.fixture
def api(bucket: str):  # type: ignore[no-untyped-def]
    client = make_api()
    assert client.get("/health").json()["segments"] == 0
    return client


def wait_for_segments(api, count: int, *, timeout: float = 30.0) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Until ``api`` serves ``count`` segments: its own checks of current.json find them."""
    deadline = time.monotonic() + timeout
    while True:
        health = api.get("/health")
        assert health.status_code == 200, health.text
        if health.json()["segments"] == count:
            assert health.json()["problem"] is None
            return health.json()
        assert time.monotonic() < deadline, f"{count} segments not served within {timeout} s"
        time.sleep(POLL)


def embedded(data: bytes) -> np.ndarray:
    """The vector search_by_image makes of ``data``, so an added image matches itself."""
    return get_service().embed(images=[data]).images[0]


def keys(answer) -> list[str]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [hit["key"] for hit in (body["results"] if isinstance(body, dict) else body)]


def brute_force(bucket: str, query: np.ndarray, extra: dict[str, np.ndarray], gone=()) -> list[str]:  # type: ignore[no-untyped-def]
    listed, vectors = stored_vectors(bucket)
    rows = [(key, vector) for key, vector in zip(listed, vectors, strict=True) if key not in gone]
    rows = [(key, v) for key, v in rows if key not in extra] + list(extra.items())
    scores = np.array([float(np.dot(v, query.ravel())) for _, v in rows])
    return [rows[at][0] for at in np.argsort(-scores, kind="stable")]


def test_an_added_image_is_found_by_every_route(api, bucket) -> None:
    data = encode(random_image(77))
    vector = embedded(data)
    rocket_row = stored_vectors(bucket)[0].index("vehicles/rocket.jpg")
    near_rocket = stored_vectors(bucket)[1][rocket_row] + 0.01 * vector
    near_rocket /= np.linalg.norm(near_rocket)
    added = {"animals/new/fresh.png": vector, "nature/rocket-again.png": near_rocket}
    add_segment(bucket, adds=added)
    health = wait_for_segments(api, 1)
    assert health["count"] == len(copies()) + 2

    found = api.post(
        "/image_search/search_by_image", files={"file": ("f.png", data)}, data={"k": 3}
    )
    assert keys(found)[0] == "animals/new/fresh.png"
    assert found.json()[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert found.json()[0]["image_url"]
    text = get_service().embedder.embed_texts(["a small fresh photo"])[0]
    answer = api.post("/image_search/search", json={"query": "a small fresh photo", "k": 13})
    assert keys(answer) == brute_force(bucket, text, added)
    similar = api.post("/image_search/similar", json={"key": "vehicles/rocket.jpg", "k": 2})
    assert keys(similar)[0] == "nature/rocket-again.png"
    similar = api.post("/image_search/similar", json={"key": "animals/new/fresh.png", "k": 3})
    assert keys(similar) == brute_force(bucket, vector, added)[1:4]
    queried = api.post("/image_search/query", json={"positive": [{"key": "animals/new/fresh.png"}]})
    assert "animals/new/fresh.png" not in keys(queried)
    inside = api.post("/image_search/search", json={"query": "x", "prefix": "animals/new/"})
    assert keys(inside) == ["animals/new/fresh.png"]
    folders = {
        f["folder"]: f["count"] for f in api.get("/image_search/folders?parent=animals").json()
    }
    assert folders["animals/new"] == 1
    top = {f["folder"]: f["count"] for f in api.get("/image_search/folders").json()}
    assert top["animals"] == 3 and top["nature"] == 6


def test_a_deleted_image_is_gone_from_every_route(api, bucket) -> None:
    gone = ["backup/cat-copy.png", "backup/astronaut.jpg", "vehicles/rocket.jpg"]
    add_segment(bucket, deletes=gone)
    assert wait_for_segments(api, 1)["count"] == len(copies()) - 3
    answers = [
        api.post("/image_search/search", json={"query": "a rocket", "k": 100, "folder": "*"}),
        api.post("/image_search/search", json={"query": "a rocket", "prefix": "vehicles/"}),
        api.post("/image_search/similar", json={"key": "animals/cat.png", "k": 100}),
        api.post("/image_search/query", json={"positive": [{"text": "a cat"}], "k": 100}),
        api.get("/image_search/duplicates"),
        api.get("/image_search/folders"),
        api.get("/image_search/folders?parent=vehicles"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert not any(key in answer.text for key in gone), answer.text
    text = get_service().embedder.embed_texts(["a rocket"])[0]
    assert keys(answers[0]) == brute_force(bucket, text, {}, gone)
    groups = [sorted(i["key"] for i in g["images"]) for g in answers[4].json()["groups"]]
    # The astronaut pair lost a member; the cat group keeps the two left.
    assert groups == [sorted(key for key in CAT if key not in gone)]
    assert set(ASTRONAUT) & set(gone)
    assert {f["folder"]: f["count"] for f in answers[5].json()} == {
        "animals": 2,
        "nature": 5,
        "vehicles": 1,
    }
    for refused in (
        api.post("/image_search/similar", json={"key": "vehicles/rocket.jpg"}),
        api.post("/image_search/query", json={"positive": [{"key": "vehicles/rocket.jpg"}]}),
        api.post("/image_search/search", json={"query": "x", "prefix": "vehicles/rocket"}),
        api.post("/image_search/search", json={"query": "x", "folder": "backup"}),
        api.get("/image_search/folders?parent=backup"),
    ):
        assert refused.status_code == 404, refused.text


def test_an_overwrite_serves_the_new_vector(api, bucket) -> None:
    data = encode(random_image(99))
    vector = embedded(data)
    add_segment(bucket, adds={"nature/noise-20.png": vector}, deletes=["nature/noise-20.png"])
    health = wait_for_segments(api, 1)
    assert health["count"] == len(copies())
    found = api.post(
        "/image_search/search_by_image", files={"file": ("f.png", data)}, data={"k": 1}
    )
    assert keys(found) == ["nature/noise-20.png"]
    assert found.json()[0]["score"] == pytest.approx(1.0, abs=1e-4)
    loaded = get_service().current()
    row = loaded.rows["nature/noise-20.png"]
    assert row >= len(loaded.base.metadata)
    np.testing.assert_allclose(loaded.index.vector(row)[0], vector / np.linalg.norm(vector))
    everything = api.post("/image_search/search", json={"query": "noise", "k": 100, "folder": "*"})
    assert keys(everything).count("nature/noise-20.png") == 1
