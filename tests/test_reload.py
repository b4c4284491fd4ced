"""Index lifecycle while the app runs: new builds are picked up, broken ones are refused."""

from __future__ import annotations

import logging
import time

import pytest

from image_search.build.pipeline import run_build
from image_search.config import get_settings
from tests.conftest import make_api, put
from tests.factories import encode, random_image

REFRESH = 0.2


def build(client, embedder) -> str:  # type: ignore[no-untyped-def]
    report = run_build(get_settings(), client=client, embedder=embedder)
    assert report.build_id
    return report.build_id


@pytest.fixture
def serving(bucket, client, embedder, monkeypatch):  # type: ignore[no-untyped-def]
    """An app serving a first build of one image, refreshing every REFRESH seconds."""
    monkeypatch.setenv("IMAGE_SEARCH_REFRESH_SECONDS", str(REFRESH))
    put(client, bucket, "animals/a.png", encode(random_image(1)))
    first = build(client, embedder)
    api = make_api()
    assert api.get("/health").json()["build_id"] == first
    return api, first


def test_a_new_build_is_served_after_the_refresh_interval(
    serving, bucket, client, embedder
) -> None:
    api, _ = serving
    put(client, bucket, "nature/b.png", encode(random_image(2)))
    second = build(client, embedder)
    time.sleep(REFRESH * 1.5)
    hits = api.post("/image_search/search", json={"query": "b", "k": 5}).json()
    assert {hit["key"] for hit in hits} == {"animals/a.png", "nature/b.png"}
    assert api.get("/health").json()["build_id"] == second


def test_a_corrupt_build_is_refused_and_the_old_one_keeps_serving(
    serving, bucket, client, embedder, caplog
) -> None:
    api, first = serving
    put(client, bucket, "animals/b.png", encode(random_image(2)))
    second = build(client, embedder)
    pointer = client.get_object(Bucket=bucket, Key="index/current.json")["Body"].read().decode()
    index_key = f"index/builds/{second}/image_faiss_index.bin"
    client.put_object(Bucket=bucket, Key=index_key, Body=b"not a faiss index")
    time.sleep(REFRESH * 1.5)
    with caplog.at_level(logging.ERROR, logger="image_search.serve.lifecycle"):
        response = api.post("/image_search/search", json={"query": "a", "k": 5})
    assert response.status_code == 200 and [h["key"] for h in response.json()] == ["animals/a.png"]
    assert api.get("/health").json()["build_id"] == first
    assert any(
        second in r.getMessage() and "previous index" in r.getMessage() for r in caplog.records
    )
    assert second in pointer


def test_a_build_from_another_model_is_refused(
    bucket, client, embedder, monkeypatch, tmp_path
) -> None:
    from image_search.model.embedder import ClipEmbedder
    from tests.factories import save_tiny_clip

    put(client, bucket, "animals/a.png", encode(random_image(1)))
    other = save_tiny_clip(tmp_path / "other", seed=3)
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(other))
    get_settings.cache_clear()
    build(client, ClipEmbedder(source=str(other), cache_dir=tmp_path))
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(embedder.source))
    response = make_api().get("/health")
    assert response.status_code == 503 and "IMAGE_SEARCH_MODEL" in response.json()["detail"]
