"""What a build does with what it finds: a damaged previous build, overlapping folders, broken
and camera images, and counts that say exactly what changed."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter

import numpy as np
import pytest

from image_search.artefacts.loader import read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import Metadata, Pointer
from image_search.config import get_settings
from image_search.serve.service import SearchService
from image_search.storage import s3
from tests.integration.test_build import build, current, populate
from tests.support.buckets import put
from tests.support.factories import (
    BROKEN_KEYS,
    IGNORED_KEYS,
    encode,
    jpeg_with_bad_exif,
    mpo_bytes,
    random_image,
    sample_bucket_layout,
    tiff_2x2,
)
from tests.support.service import make_api, point_at_index


def images(count: int, folder: str = "animals", *, start: int = 0) -> dict[str, bytes]:
    return {f"{folder}/a{i:02d}.png": encode(random_image(i)) for i in range(start, start + count)}


def read(client: s3.S3Client, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def pointer_of(client: s3.S3Client, bucket: str) -> Pointer:
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    return pointer


class CountingGets:
    """A real client that counts the objects it downloads."""

    def __init__(self, client: s3.S3Client) -> None:
        self._client = client
        self.gets: Counter[str] = Counter()

    def get_object(self, **kwargs: object) -> object:
        self.gets[str(kwargs["Key"])] += 1
        return self._client.get_object(**kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


# ---- a damaged previous build ----------------------------------------------------------------


def damage(client: s3.S3Client, bucket: str, how: str) -> None:
    pointer = pointer_of(client, bucket)
    assert pointer.embeddings_key is not None
    if how == "unreadable-pointer":
        put(client, bucket, "index/current.json", b'{"build_id": ')
    elif how.startswith("missing-"):
        key = {
            "missing-metadata": pointer.metadata_key,
            "missing-index": pointer.index_key,
            "missing-embeddings": pointer.embeddings_key,
        }[how]
        client.delete_object(Bucket=bucket, Key=key)
    elif how == "corrupt-index":
        data = read(client, bucket, pointer.index_key)
        put(client, bucket, pointer.index_key, b"\0" * 64 + data[64:])
    elif how == "corrupt-embeddings":
        put(
            client,
            bucket,
            pointer.embeddings_key,
            read(client, bucket, pointer.embeddings_key)[:90],
        )
    elif how == "wrong-count":
        meta = json.loads(read(client, bucket, pointer.metadata_key))
        meta["count"] += 1
        put(client, bucket, pointer.metadata_key, json.dumps(meta).encode())
    elif how == "nan-embeddings":
        buffer = io.BytesIO()
        vectors = np.load(io.BytesIO(read(client, bucket, pointer.embeddings_key)))
        vectors[0, 0] = np.nan
        np.save(buffer, vectors)
        put(client, bucket, pointer.embeddings_key, buffer.getvalue())


DAMAGE = [
    "unreadable-pointer",
    "missing-metadata",
    "missing-index",
    "missing-embeddings",
    "corrupt-index",
    "corrupt-embeddings",
    "wrong-count",
    "nan-embeddings",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_broken_current_build_gives_one_warning_and_a_full_build(
    client, bucket, embedder, tmp_path, caplog, how: str
) -> None:
    populate(client, bucket, images(3))
    build(client, embedder)
    damage(client, bucket, how)

    with caplog.at_level(logging.WARNING, logger="image_search"):
        report = build(client, embedder)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "the current build is unusable" in warnings[0].getMessage()
    assert "building everything from scratch" in warnings[0].getMessage()
    assert report.published and report.embedded == report.count == 3 and report.reused == 0
    assert current(client, bucket, tmp_path).index.ntotal == 3  # and the new one loads


# ---- overlapping folders ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "folders", ["animals,animals/", "animals,animals/deep", "animals/deep,animals"]
)
def test_overlapping_folders_index_each_image_once(
    client, bucket, embedder, tiny_model, tmp_path, monkeypatch, folders: str
) -> None:
    populate(client, bucket, images(3) | images(2, "animals/deep", start=10) | images(1, "nature"))
    monkeypatch.setenv("IMAGE_SEARCH_FOLDERS", folders)
    get_settings.cache_clear()
    report = build(client, embedder)
    meta = current(client, bucket, tmp_path).metadata
    keys = [item.key for item in meta.items]
    assert report.count == len(keys) == len(set(keys)) == 5
    assert meta.folders == {"animals": (0, 5)}

    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path / "serve")
    service = SearchService(get_settings())
    for key in keys:
        assert key not in [hit.key for hit in service.similar(key, k=4).hits]


@pytest.mark.parametrize(
    ("bad", "message", "compact"),
    [
        # The compact catalog carries no per-item JSON: a duplicate key is only checkable in the
        # metadata JSON, which builds without the catalog are served from.
        ("duplicate-key", "lists a key more than once", False),
        ("range-past-the-end", "range [0, 99) is not inside the index of 3 vectors", False),
        ("range-past-the-end", "range [0, 99) is not inside the index of 3 vectors", True),
        ("overlapping-ranges", "folder 'nature' range [1, 3) overlaps folder 'animals'", False),
        ("overlapping-ranges", "folder 'nature' range [1, 3) overlaps folder 'animals'", True),
    ],
)
def test_metadata_with_duplicate_keys_or_bad_ranges_is_refused_with_503(
    client, bucket, embedder, tiny_model, tmp_path, monkeypatch, bad: str, message: str, compact
) -> None:
    populate(client, bucket, images(2) | images(1, "nature", start=5))
    build(client, embedder)
    pointer = pointer_of(client, bucket)
    assert pointer.catalog_key is not None
    # The document the service reads: catalog.json, or for an old build the metadata JSON.
    key = pointer.catalog_key if compact else pointer.metadata_key
    meta = json.loads(read(client, bucket, key))
    if bad == "duplicate-key":
        meta["items"][1]["key"] = meta["items"][0]["key"]
    elif bad == "range-past-the-end":
        meta["folders"]["animals"] = [0, 99]
    else:
        meta["folders"]["nature"] = [1, 3]
    put(client, bucket, key, json.dumps(meta).encode())
    if not compact:
        old = pointer.model_copy(update={"catalog_key": None})
        put(client, bucket, "index/current.json", old.model_dump_json().encode())

    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path)
    api = make_api()
    health = api.get("/health")
    assert health.status_code == 503 and message in health.json()["detail"]
    search = api.post("/image_search/search", json={"query": "cat", "folder": "animals"})
    assert search.status_code == 503 and message in search.json()["detail"]


# ---- broken and camera images in the bucket --------------------------------------------------


def test_camera_jpegs_are_indexed_and_malformed_files_skipped(
    client, bucket, embedder, tmp_path
) -> None:
    populate(
        client,
        bucket,
        {
            "camera/IMG_0001.JPG": mpo_bytes(3),
            "camera/plain.png": encode(random_image(4)),
            "camera/bad-exif.jpg": jpeg_with_bad_exif(),
            "camera/bad-strips.tif": tiff_2x2(text_strip_offsets=True),
        },
    )
    report = build(client, embedder)
    # What was skipped is in the metadata JSON (the contract), not in the service's catalog.
    meta = Metadata.model_validate_json(
        read(client, bucket, pointer_of(client, bucket).metadata_key)
    )
    # A malformed EXIF tag leaves the picture indexed (issue 24); a malformed layout does not.
    assert report.published and [i.key for i in meta.items] == [
        "camera/IMG_0001.JPG",
        "camera/bad-exif.jpg",
        "camera/plain.png",
    ]
    assert {(s.key, s.cause) for s in meta.skipped} == {("camera/bad-strips.tif", "image")}
    assert all("could not be decoded" in s.reason for s in meta.skipped)


# ---- exact counts, and nothing published when nothing changed -------------------------------


def test_an_unchanged_bucket_with_broken_objects_publishes_nothing(
    client, bucket, embedder
) -> None:
    populate(client, bucket, sample_bucket_layout())
    first = build(client, embedder)
    valid = len(sample_bucket_layout()) - len(BROKEN_KEYS) - len(IGNORED_KEYS)
    assert (first.count, first.added, len(first.skipped)) == (valid, valid, len(BROKEN_KEYS))

    counting = CountingGets(client)
    again = build(counting, embedder)
    assert not again.published and again.build_id == first.build_id
    counts = (again.added, again.updated, again.removed, again.reused, again.embedded)
    assert counts == (0, 0, 0, valid, 0) and again.count == valid
    assert {s.key for s in again.skipped} == BROKEN_KEYS
    assert not BROKEN_KEYS & set(counting.gets)  # unchanged broken objects are not fetched again

    # A broken object fixed (a new ETag) is picked up; it is added, not updated.
    put(client, bucket, "animals/notes.jpg", encode(random_image(77), "JPEG"))
    fixed = build(client, embedder)
    assert fixed.published and (fixed.added, fixed.embedded, fixed.count) == (1, 1, valid + 1)
    assert {s.key for s in fixed.skipped} == BROKEN_KEYS - {"animals/notes.jpg"}


def test_counts_are_exact(client, bucket, embedder) -> None:
    populate(client, bucket, images(6) | {"animals/broken.jpg": b"not an image"})
    first = build(client, embedder)
    assert (first.count, first.added, first.embedded, len(first.skipped)) == (6, 6, 6, 1)

    populate(client, bucket, images(2, start=20))  # 2 added
    put(client, bucket, "animals/new-broken.jpg", b"still not an image")  # 1 more skipped
    put(client, bucket, "animals/a00.png", encode(random_image(40)))  # 1 updated
    put(client, bucket, "animals/a01.png", b"broken now")  # was indexed: removed, skipped
    client.delete_object(Bucket=bucket, Key="animals/a02.png")  # 1 removed
    report = build(client, embedder)

    assert report.published
    assert (report.added, report.updated, report.removed) == (2, 1, 2)
    assert (report.embedded, report.reused, report.count) == (3, 3, 6)
    assert {s.key for s in report.skipped} == {
        "animals/broken.jpg",
        "animals/new-broken.jpg",
        "animals/a01.png",
    }
    listed = len(s3.list_images(client, bucket=bucket, folders=[], exclude_prefix="index/"))
    assert report.count + len(report.skipped) == listed
    assert report.count == report.reused + report.embedded == first.count + 2 - 2


def test_ivfpq_on_a_small_bucket_publishes_once(client, bucket, embedder, monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_SEARCH_INDEX_TYPE", "ivfpq")  # falls back to flat below 20,000
    get_settings.cache_clear()
    populate(client, bucket, images(4))
    first = build(client, embedder)
    assert first.published and first.index_type == "flat"
    again = build(client, embedder)
    assert not again.published and again.build_id == first.build_id
