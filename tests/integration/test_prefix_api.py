"""``prefix`` on every search route and ``GET /image_search/folders?parent=``, end to end: the real
build over nested keys on moto S3, checked against brute force over the build's stored vectors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.artefacts.manifest import folder_ranges
from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.index import faiss_index
from image_search.serve.service import get_service
from image_search.storage import s3
from tests.integration.test_api import oracle, stored_vectors
from tests.support.buckets import published_bucket
from tests.support.factories import png_bytes
from tests.support.service import make_api, point_at_index

NESTED = {
    **{f"animals/cats/indoor/c{i}.png": png_bytes(i) for i in range(4)},
    **{f"animals/cats/outdoor/c{i}.png": png_bytes(i) for i in range(4, 7)},
    **{f"animals/dogs/d{i}.png": png_bytes(i) for i in range(7, 10)},
    "animals/top.png": png_bytes(10),
    "animals-x/odd.png": png_bytes(11),  # sorts before "animals/…" by key, after it by folder
    **{f"2024/06/01/a{i}.png": png_bytes(i) for i in range(12, 15)},
    "2024/06/02/b.png": png_bytes(15),
    "2024/07/c.png": png_bytes(16),
    "nature/leaf.png": png_bytes(17),
}
PREFIXES = ["animals/", "animals/cats/", "animals/cats/indoor/", "2024/06/", "2024/06/01/", "anim"]


@pytest.fixture(scope="module")
def nested_bucket(s3_endpoint: str, tiny_model: Path, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    return published_bucket(NESTED, model=tiny_model, cache=tmp_path_factory.mktemp("cache"))


@pytest.fixture
def nested_api(nested_bucket: str, tiny_model: Path, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    point_at_index(monkeypatch, bucket=nested_bucket, model=tiny_model, cache=tmp_path)
    yield make_api()
    get_settings.cache_clear()
    get_service.cache_clear()


def under(prefix: str, ranking: list[str]) -> list[str]:
    return [key for key in ranking if key.startswith(prefix)]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_text_search_inside_a_prefix_is_its_true_top_k(nested_api, nested_bucket, prefix) -> None:
    keys, vectors = stored_vectors(nested_bucket)
    # "animals" would be detected as a folder: an explicit prefix turns detection off.
    query = "animals in 2024"
    response = nested_api.post(
        "/image_search/search", json={"query": query, "k": 3, "prefix": prefix}
    )
    assert response.status_code == 200, response.text
    ranking = oracle(get_service().embedder.embed_texts([query]), keys, vectors)
    assert [hit["key"] for hit in response.json()] == under(prefix, ranking)[:3]
    assert response.headers["X-Image-Search-Prefix"] == prefix
    assert response.headers["X-Image-Search-Detected"] == "false"


def test_image_search_and_similar_inside_a_prefix(nested_api, nested_bucket) -> None:
    keys, vectors = stored_vectors(nested_bucket)
    upload = NESTED["2024/07/c.png"]
    response = nested_api.post(
        "/image_search/search_by_image",
        files={"file": ("q.png", upload)},
        data={"k": "2", "prefix": "animals/cats/"},
    )
    ranking = oracle(vectors[keys.index("2024/07/c.png")], keys, vectors)
    assert [hit["key"] for hit in response.json()] == under("animals/cats/", ranking)[:2]

    key = "animals/cats/indoor/c0.png"
    similar = nested_api.post(
        "/image_search/similar", json={"key": key, "k": 5, "prefix": "animals/cats/"}
    )
    ranking = [k for k in oracle(vectors[keys.index(key)], keys, vectors) if k != key]
    assert [hit["key"] for hit in similar.json()] == under("animals/cats/", ranking)[:5]


def test_folder_and_prefix_together_search_both(nested_api) -> None:
    both = nested_api.post(
        "/image_search/search",
        json={"query": "x", "k": 10, "folder": "animals", "prefix": "animals/dogs/"},
    )
    assert sorted(hit["key"] for hit in both.json()) == [
        f"animals/dogs/d{i}.png" for i in (7, 8, 9)
    ]
    apart = nested_api.post(
        "/image_search/search", json={"query": "x", "folder": "nature", "prefix": "animals/"}
    )
    assert apart.status_code == 404 and "in folder 'nature'" in apart.json()["detail"]


@pytest.mark.parametrize(
    ("prefix", "status"), [("animals/birds/", 404), ("/animals/", 404), ("a" * 1025, 422)]
)
def test_bad_prefixes_are_clear_4xx(nested_api, prefix: str, status: int) -> None:
    response = nested_api.post("/image_search/search", json={"query": "x", "prefix": prefix})
    assert response.status_code == status and response.json()["detail"]


def test_folders_lists_sub_folders_with_counts(nested_api) -> None:
    def listing(parent: str | None) -> list[tuple[str, int]]:
        params = {} if parent is None else {"parent": parent}
        response = nested_api.get("/image_search/folders", params=params)
        assert response.status_code == 200, response.text
        return [(row["folder"], row["count"]) for row in response.json()]

    assert sorted(listing(None)) == [("2024", 5), ("animals", 11), ("animals-x", 1), ("nature", 1)]
    assert listing("animals/") == [("animals/cats", 7), ("animals/dogs", 3)]
    assert listing("animals") == listing("animals/")
    assert listing("animals/cats/") == [("animals/cats/indoor", 4), ("animals/cats/outdoor", 3)]
    assert listing("2024/") == [("2024/06", 4), ("2024/07", 1)]
    assert listing("nature/") == []  # images but no sub-folders
    missing = nested_api.get("/image_search/folders", params={"parent": "planets/"})
    assert missing.status_code == 404 and "planets/" in missing.json()["detail"]


def test_builds_sorted_by_folder_still_answer_folders_and_prefixes(
    client, nested_bucket, tiny_model, embedder, tmp_path, monkeypatch
) -> None:
    """A build published before key order (no ``sorted_by``: items in (folder, key) order) loads
    and answers folder and prefix searches exactly; the next build republishes it in key order."""
    bucket = published_bucket(NESTED, model=tiny_model, cache=tmp_path / "model")
    publish_as_old_build(client, bucket)
    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path)
    api = make_api()
    keys, vectors = stored_vectors(bucket)
    assert keys.index("animals/top.png") < keys.index("animals-x/odd.png")  # folder order
    ranking = oracle(get_service().embedder.embed_texts(["dogs"]), keys, vectors)
    for body, expected in [
        ({"prefix": "anim"}, under("anim", ranking)),
        ({"prefix": "animals/cats/"}, under("animals/cats/", ranking)),
        ({"folder": "animals"}, under("animals/", ranking)),
        ({"folder": "animals-x"}, under("animals-x/", ranking)),
    ]:
        response = api.post("/image_search/search", json={"query": "dogs", "k": 20, **body})
        assert [hit["key"] for hit in response.json()] == expected, body
    assert api.get("/image_search/folders", params={"parent": "animals"}).json() == [
        {"folder": "animals/cats", "count": 7},
        {"folder": "animals/dogs", "count": 3},
    ]

    report = run_build(get_settings(), client=client, embedder=embedder)
    assert report.published and report.embedded == 0
    keys, _ = stored_vectors(bucket)
    assert keys == sorted(keys)


def publish_as_old_build(client: s3.S3Client, bucket: str) -> None:
    """Republish the bucket's build as the code before key order wrote it: items (and rows) in
    (folder, key) order, no ``sorted_by`` or ``duplicates`` in the metadata."""
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    metadata, vectors = load_vectors(IndexLocation(client, bucket, "index/"), pointer=pointer)
    order = sorted(range(metadata.count), key=lambda row: (metadata.items[row].folder, row))
    items = [metadata.items[row] for row in order]
    document = metadata.model_copy(
        update={"build_id": new_build_id(), "items": items, "folders": folder_ranges(items)}
    ).model_dump(mode="json", exclude={"sorted_by", "duplicates"})
    matrix = np.ascontiguousarray(vectors[order])
    npy = io.BytesIO()
    np.save(npy, matrix)
    old = IndexLocation(client, bucket, "index/").pointer_for(document["build_id"])
    files = {
        old.index_key: faiss_index.build(matrix, index_type="flat").serialised().tobytes(),
        old.metadata_key: json.dumps(document).encode(),
        old.embeddings_key or "": npy.getvalue(),
        IndexLocation(client, bucket, "index/").pointer_key: old.model_dump_json().encode(),  # last
    }
    for key, data in files.items():
        s3.put_bytes(client, bucket=bucket, key=key, data=data, content_type="application/json")
