"""Near-duplicates end to end: the real build over copies on moto S3, ``GET /duplicates``, and an
incremental build after a copy is deleted.

The tiny random CLIP puts every picture close to every other: measured on these files, distinct
ones score at most 0.9968 against each other, while byte-identical, re-encoded (JPEG q80/q90)
and half-size copies score 0.9996 or more. The tests therefore group at 0.999 (the default,
0.95, is for a trained CLIP; docs/duplicates.md) and check every group against brute force.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.model import images
from image_search.serve.service import get_service
from tests.index.test_duplicates import oracle
from tests.integration.test_api import stored_vectors
from tests.integration.test_prefix_api import publish_as_old_build
from tests.support.buckets import published_bucket, put
from tests.support.factories import encode, png_bytes, skimage_photos
from tests.support.service import make_api, point_at_index

SCORE = 0.999


def copies() -> dict[str, bytes]:
    photos = skimage_photos()
    cat = images.decode(photos["chelsea.png"], max_pixels=10**8)
    half = cat.resize((cat.width // 2, cat.height // 2), Image.Resampling.LANCZOS)
    astronaut = images.decode(photos["astronaut.png"], max_pixels=10**8)
    return {
        "animals/cat.png": photos["chelsea.png"],
        "backup/cat-copy.png": photos["chelsea.png"],  # byte-identical, another key
        "animals/small/cat.jpg": encode(half, "JPEG", quality=80),  # resized and re-encoded
        "nature/astronaut.png": photos["astronaut.png"],
        "backup/astronaut.jpg": encode(astronaut, "JPEG", quality=90),  # re-encoded
        "vehicles/rocket.jpg": photos["rocket.jpg"],
        "vehicles/coffee.png": photos["coffee.png"],
        **{f"nature/noise-{seed}.png": png_bytes(seed) for seed in range(20, 24)},
    }


CAT = ["animals/cat.png", "animals/small/cat.jpg", "backup/cat-copy.png"]
ASTRONAUT = ["backup/astronaut.jpg", "nature/astronaut.png"]


@pytest.fixture(scope="module")
def copies_bucket(s3_endpoint: str, tiny_model: Path, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    cache = tmp_path_factory.mktemp("cache")
    return published_bucket(copies(), model=tiny_model, cache=cache, duplicate_score=SCORE)


@pytest.fixture
def api(copies_bucket: str, tiny_model: Path, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("IMAGE_SEARCH_DUPLICATE_SCORE", str(SCORE))
    point_at_index(monkeypatch, bucket=copies_bucket, model=tiny_model, cache=tmp_path)
    yield make_api()
    get_settings.cache_clear()
    get_service.cache_clear()


def keys_of(page: dict) -> list[list[str]]:
    return [sorted(image["key"] for image in group["images"]) for group in page["groups"]]


def expected_groups(bucket: str, score: float) -> list[list[str]]:
    keys, vectors = stored_vectors(bucket)
    return sorted([keys[row] for row in group] for group in oracle(vectors, score))


def test_copies_are_grouped_and_distinct_images_are_not(api, copies_bucket) -> None:
    response = api.get("/image_search/duplicates")
    assert response.status_code == 200, response.text
    page = response.json()
    assert keys_of(page) == [CAT, ASTRONAUT]  # largest first
    assert sorted(keys_of(page)) == expected_groups(copies_bucket, SCORE)
    assert page["total"] == 2 and page["min_score"] == SCORE
    cat = page["groups"][0]
    assert cat["size"] == 3 and cat["score"] == pytest.approx(1.0, abs=1e-5)
    for image in cat["images"]:
        assert image["s3_path"] == f"s3://{copies_bucket}/{image['key']}"
        assert "X-Amz-Signature=" in image["image_url"]
        assert image["folder"] == image["key"].split("/")[0]
        assert SCORE <= image["score"] <= cat["score"] + 1e-6
    # The two byte-identical files have the same vector: each is the other's best match.
    best = {image["key"]: image["score"] for image in cat["images"]}
    assert best["animals/cat.png"] == best["backup/cat-copy.png"] == pytest.approx(1.0, abs=1e-5)


def test_a_higher_min_score_splits_groups_like_a_new_search(api, copies_bucket) -> None:
    for score in (0.9999, 0.99999, 0.999999):
        page = api.get("/image_search/duplicates", params={"min_score": score}).json()
        assert page["min_score"] == score
        assert sorted(keys_of(page)) == expected_groups(copies_bucket, score), score
    lower = api.get("/image_search/duplicates", params={"min_score": 0.5}).json()
    assert lower["min_score"] == SCORE  # the build recorded no weaker pairs


def test_folder_and_prefix_pick_groups_with_an_image_inside(api) -> None:
    def groups(**params: object) -> list[list[str]]:
        response = api.get("/image_search/duplicates", params=params)
        assert response.status_code == 200, response.text
        return keys_of(response.json())

    assert groups(folder="animals") == [CAT]  # every member listed, wherever it is
    assert groups(folder="backup") == [CAT, ASTRONAUT]
    assert groups(prefix="nature/astro") == [ASTRONAUT]
    assert groups(prefix="animals/small/") == [CAT]
    assert groups(folder="vehicles") == []
    assert api.get("/image_search/duplicates", params={"folder": "planets"}).status_code == 404


def test_pages(api) -> None:
    first = api.get("/image_search/duplicates", params={"limit": 1}).json()
    second = api.get("/image_search/duplicates", params={"limit": 1, "offset": 1}).json()
    beyond = api.get("/image_search/duplicates", params={"limit": 1, "offset": 2}).json()
    assert keys_of(first) == [CAT] and keys_of(second) == [ASTRONAUT] and beyond["groups"] == []
    assert first["total"] == second["total"] == beyond["total"] == 2
    for params in ({"limit": 0}, {"limit": 51}, {"offset": -1}, {"min_score": 2}):
        response = api.get("/image_search/duplicates", params=params)
        assert response.status_code == 422, params


def test_an_incremental_build_updates_the_groups(client, bucket, embedder, monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_SEARCH_DUPLICATE_SCORE", str(SCORE))
    for key, data in copies().items():
        put(client, bucket, key, data)
    settings = get_settings()
    run_build(settings, client=client, embedder=embedder)
    api = make_api()
    assert keys_of(api.get("/image_search/duplicates").json()) == [CAT, ASTRONAUT]

    client.delete_object(Bucket=bucket, Key="backup/cat-copy.png")
    report = run_build(settings, client=client, embedder=embedder)
    assert report.published and report.removed == 1 and report.duplicate_groups == 2
    api = make_api()
    assert sorted(keys_of(api.get("/image_search/duplicates").json())) == [
        ["animals/cat.png", "animals/small/cat.jpg"],
        ASTRONAUT,
    ]

    client.delete_object(Bucket=bucket, Key="backup/astronaut.jpg")
    assert run_build(settings, client=client, embedder=embedder).duplicate_groups == 1
    page = make_api().get("/image_search/duplicates").json()
    assert keys_of(page) == [["animals/cat.png", "animals/small/cat.jpg"]]


def test_a_build_without_groups_still_serves_and_says_why(client, bucket, embedder) -> None:
    for key, data in list(copies().items())[:3]:
        put(client, bucket, key, data)
    run_build(get_settings(), client=client, embedder=embedder)
    publish_as_old_build(client, bucket)  # as published before near-duplicates existed
    api = make_api()
    assert api.post("/image_search/search", json={"query": "cat"}).status_code == 200
    response = api.get("/image_search/duplicates")
    assert response.status_code == 404
    assert "no near-duplicate groups" in response.json()["detail"]


def test_groups_naming_a_key_the_build_does_not_hold_answer_503_with_why(
    client, bucket, embedder, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGE_SEARCH_DUPLICATE_SCORE", str(SCORE))
    for key, data in copies().items():
        put(client, bucket, key, data)
    report = run_build(get_settings(), client=client, embedder=embedder)
    doc_key = f"index/builds/{report.build_id}/duplicates.json"
    doc = json.loads(client.get_object(Bucket=bucket, Key=doc_key)["Body"].read())
    doc["groups"][0]["keys"][0] = "elsewhere/not-indexed.png"
    put(client, bucket, doc_key, json.dumps(doc).encode())
    api = make_api()
    response = api.get("/image_search/duplicates")
    assert response.status_code == 503
    assert "'elsewhere/not-indexed.png', which it does not index" in response.json()["detail"]
    assert api.post("/image_search/search", json={"query": "cat"}).status_code == 200


def test_openapi_describes_prefix_parent_and_duplicates(api) -> None:
    document = api.get("/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    duplicates = paths["/image_search/duplicates"]["get"]
    assert set(duplicates["responses"]) == {"200", "401", "404", "422", "503"}
    assert {p["name"] for p in duplicates["parameters"]} == {
        "min_score",
        "folder",
        "prefix",
        "offset",
        "limit",
    }
    assert duplicates["security"]
    page = duplicates["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert page.endswith("/DuplicatesPage")
    assert {"size", "score", "images"} <= set(schemas["DuplicateGroup"]["properties"])
    assert "prefix" in schemas["SearchRequest"]["properties"]
    assert "prefix" in schemas["SimilarRequest"]["properties"]
    folders = paths["/image_search/folders"]["get"]
    assert [p["name"] for p in folders["parameters"]] == ["parent"]
