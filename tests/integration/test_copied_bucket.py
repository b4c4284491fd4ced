"""A copied or replicated bucket (issue 21, item 6): it serves its own images, never those of the
bucket its index was built in, and its first build republishes reusing every vector."""

from __future__ import annotations

import urllib.request
import uuid
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import Metadata
from image_search.config import get_settings
from image_search.storage import s3
from tests.integration.test_build import build, populate
from tests.support.factories import png_bytes, skimage_photos
from tests.support.service import make_api


def layout() -> dict[str, bytes]:
    photos = skimage_photos()
    return {
        "animals/cat.png": photos["chelsea.png"],
        "backup/cat.png": photos["chelsea.png"],  # a byte-identical copy: a duplicate group
        "nature/astronaut.png": photos["astronaut.png"],
        **{f"nature/noise-{seed}.png": png_bytes(seed) for seed in range(3)},
    }


def copy_of(client: s3.S3Client, source: str) -> str:
    """A new bucket holding every object of ``source``, index included (as a replica would)."""
    name = f"copy-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    for obj in s3.list_objects(client, bucket=source):
        source_object = {"Bucket": source, "Key": obj["Key"]}
        client.copy_object(Bucket=name, Key=obj["Key"], CopySource=source_object)
    return name


@pytest.fixture
def copied(client, bucket, embedder, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(original, copy): an indexed bucket and its copy, the settings pointing at the copy."""
    populate(client, bucket, layout())
    assert build(client, embedder).published
    copy = copy_of(client, bucket)
    monkeypatch.setenv("IMAGE_SEARCH_BUCKET", copy)
    get_settings.cache_clear()
    return bucket, copy


def in_bucket(url: str, bucket: str) -> str:
    """The key a path-style URL (moto's endpoint) names in ``bucket``; fails for another bucket."""
    path = unquote(urlsplit(url).path)
    assert path.startswith(f"/{bucket}/"), (url, bucket)
    return path[len(bucket) + 2 :]


def test_a_copied_bucket_serves_its_own_images(client, copied) -> None:
    original, copy = copied
    client.delete_object(Bucket=original, Key="animals/cat.png")  # the old bucket moves on
    api = make_api()

    hits = api.post("/image_search/search", json={"query": "a cat", "k": 6}).json()
    assert len(hits) == 6
    for hit in hits:
        assert hit["s3_path"] == f"s3://{copy}/{hit['key']}"
        assert in_bucket(hit["image_url"], copy) == hit["key"]
        with urllib.request.urlopen(hit["image_url"], timeout=10) as answer:  # a real GET: moto
            assert answer.read() == layout()[hit["key"]]

    similar = api.post(
        "/image_search/similar", json={"s3_path": f"s3://{copy}/animals/cat.png", "k": 2}
    )
    assert similar.status_code == 200, similar.text
    assert all(hit["s3_path"].startswith(f"s3://{copy}/") for hit in similar.json())
    old_path = {"s3_path": f"s3://{original}/animals/cat.png", "k": 2}
    assert api.post("/image_search/similar", json=old_path).status_code == 404

    page = api.get("/image_search/duplicates").json()
    shown = [image for group in page["groups"] for image in group["images"]]
    assert {"animals/cat.png", "backup/cat.png"} <= {image["key"] for image in shown}
    for image in shown:
        assert image["s3_path"] == f"s3://{copy}/{image['key']}"
        assert in_bucket(image["image_url"], copy) == image["key"]


def test_the_first_build_in_a_copy_republishes_with_the_same_vectors(
    client, copied, embedder
) -> None:
    original, copy = copied
    before = published(client, original)

    report = build(client, embedder)

    assert report.published and (report.embedded, report.reused) == (0, len(layout()))
    after = published(client, copy)
    assert after[0].bucket == copy and after[0].build_id == report.build_id
    assert [i.key for i in after[0].items] == [i.key for i in before[0].items]
    np.testing.assert_array_equal(after[1], before[1])
    again = build(client, embedder)
    assert not again.published and again.build_id == report.build_id


def published(client: s3.S3Client, bucket: str) -> tuple[Metadata, np.ndarray]:
    """The metadata and vectors of the build ``bucket``'s pointer names."""
    where = IndexLocation(client, bucket, "index/")
    pointer = read_pointer(where)
    assert pointer is not None
    return load_vectors(where, pointer=pointer)
