"""Stage 3, the merge: items published sorted by key with each image's own vector (an oracle over
the pixels), reused rows moved to their new places, a shard without a result leaving its images
skipped, and nothing published when the build it started from is gone."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from image_search.artefacts import duplicates
from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.build.merge_stage import merge_build
from image_search.build.plan_stage import plan_build, plan_listing
from image_search.build.shard_stage import embed_shard
from image_search.errors import NoImagesError, PublishConflictError
from image_search.index import faiss_index
from image_search.storage import s3
from tests.support.embedders import CountingEmbedder, pixel_vector
from tests.support.factories import png_bytes
from tests.support.stages import build_here, embed_all, keys_under, pictures

MODEL = CountingEmbedder().identity


def published(where):  # type: ignore[no-untyped-def]
    pointer = read_pointer(where)
    assert pointer is not None
    metadata, vectors = load_vectors(where, pointer=pointer)
    return pointer, metadata, vectors


def assert_each_vector_on_its_key(where, images: dict[str, bytes]) -> None:  # type: ignore[no-untyped-def]
    """The published build holds ``images`` sorted by key, row i holding item i's vector, and
    its index finds each row from its own vector."""
    pointer, metadata, vectors = published(where)
    keys = [item.key for item in metadata.items]
    assert keys == sorted(images)
    expected = np.vstack([pixel_vector(Image.open(io.BytesIO(images[key]))) for key in keys])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    index = faiss_index.from_bytes(
        s3.get_bytes(where.client, bucket=where.bucket, key=pointer.index_key)
    )
    assert index.ntotal == len(keys)
    for row in range(len(keys)):
        assert index.search(vectors[row], k=1).ids == [row]


def test_items_are_published_sorted_by_key_each_with_its_own_vector(where, options, put) -> None:
    images = {**pictures(7, folder="nature"), **pictures(6, folder="animals", seed=20)}
    listing = put(images)
    random.Random(4).shuffle(listing)  # shards in an order that is not the keys'
    planned = plan_listing(where, options, listing, model=MODEL)
    assert len(planned.shards) > 1
    embed_all(where, options, planned, CountingEmbedder())

    report = merge_build(where, options, planned.plan)

    assert report.published and (report.count, report.embedded, report.added) == (13, 13, 13)
    assert_each_vector_on_its_key(where, images)
    _, metadata, _ = published(where)
    assert metadata.build_id == report.build_id and metadata.sorted_by == "key"
    assert metadata.folders == {"animals": (0, 6), "nature": (6, 13)}
    assert keys_under(where, where.work_prefix) == set()  # the work files are cleaned up


def test_reused_vectors_move_to_their_new_rows(where, options, put) -> None:
    images = pictures(6)
    put(images)
    build_here(where, options, CountingEmbedder())
    changed = {
        "animals/aaa.png": png_bytes(70, size=(8, 8)),
        "animals/img003.png": png_bytes(71, size=(8, 8)),
    }
    put(changed)  # a key sorting first shifts every reused row by one
    embedder = CountingEmbedder()

    report = build_here(where, options, embedder)

    assert embedder.images == 2
    assert (report.reused, report.embedded, report.added, report.updated) == (5, 2, 1, 1)
    assert_each_vector_on_its_key(where, {**images, **changed})


def test_identical_images_are_published_as_a_duplicate_group(where, options, put, tmp_path) -> None:
    twin = png_bytes(90, size=(8, 8))
    put({**pictures(4), "animals/twin-a.png": twin, "nature/twin-b.png": twin})

    report = build_here(where, options, CountingEmbedder())

    _, metadata, _ = published(where)
    assert metadata.duplicates is not None and metadata.duplicates.groups == 1
    assert metadata.duplicates.key == where.duplicates_key(metadata.build_id)
    assert metadata.duplicates.min_score == options.duplicate_score
    doc = duplicates.read(
        where, key=metadata.duplicates.key, build_id=metadata.build_id, cache_dir=tmp_path
    )
    assert [sorted(group.keys) for group in doc.groups] == [
        ["animals/twin-a.png", "nature/twin-b.png"]
    ]
    assert report.duplicate_groups == 1


def test_a_shard_without_a_result_leaves_its_images_skipped(where, options, put) -> None:
    images = pictures(16)
    put(images)
    planned = plan_build(where, options, model=MODEL)
    unfinished, *others = planned.shards
    assert others
    for shard in others:
        embed_shard(
            where, options, shard, plan_id=planned.plan.plan_id, embedder=CountingEmbedder()
        )

    report = merge_build(where, options, planned.plan)

    waiting = {obj.key for obj in unfinished.objects}
    assert report.published and report.count == 16 - len(waiting)
    assert {s.key for s in report.skipped} == waiting
    assert all("did not finish" in s.reason for s in report.skipped)
    assert_each_vector_on_its_key(where, {k: v for k, v in images.items() if k not in waiting})
    # The next build embeds exactly those.
    embedder = CountingEmbedder()
    build_here(where, options, embedder)
    assert embedder.images == len(waiting)
    assert_each_vector_on_its_key(where, images)


def test_no_decodable_image_is_an_error(where, options, put) -> None:
    put({"animals/a.png": b"not an image", "animals/b.png": b""})
    planned = plan_build(where, options, model=MODEL)
    embed_all(where, options, planned, CountingEmbedder())
    with pytest.raises(NoImagesError, match="none of the 2 images could be decoded"):
        merge_build(where, options, planned.plan)
    assert read_pointer(where) is None


def test_nothing_is_published_when_the_build_it_started_from_is_gone(where, options, put) -> None:
    put(pictures(5))
    build_here(where, options, CountingEmbedder())
    put({"animals/img001.png": png_bytes(80, size=(8, 8))})
    planned = plan_build(where, options, model=MODEL)
    embed_all(where, options, planned, CountingEmbedder())
    before = read_pointer(where)
    assert before is not None
    # Another build published and pruned the one this plan reuses rows of.
    s3.delete_keys(
        where.client,
        bucket=where.bucket,
        keys=sorted(keys_under(where, where.build_folder(before.build_id))),
    )

    with pytest.raises(PublishConflictError, match="current.json changed"):
        merge_build(where, options, planned.plan)
    assert read_pointer(where) == before


def test_a_bucket_of_only_known_broken_images_is_an_error_that_counts_them(
    where, options, put
) -> None:
    put({**pictures(1), "animals/broken.png": b"not an image"})
    build_here(where, options, CountingEmbedder())
    s3.delete_keys(where.client, bucket=where.bucket, keys=["animals/img000.png"])

    with pytest.raises(NoImagesError) as raised:
        build_here(where, options, CountingEmbedder())

    assert "0 images" not in str(raised.value)
    assert keys_under(where, where.work_prefix) == set()
