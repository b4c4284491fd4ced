"""Stage 2, one shard: rows saved in input order with each image's own vector, undecodable
objects skipped with a reason, and a second call resumes without embedding."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from image_search.build import work
from image_search.build.shard_stage import embed_shard
from image_search.build.shards import Shard, shard_id
from tests.support.embedders import CountingEmbedder, pixel_vector
from tests.support.factories import png_bytes
from tests.support.stages import pictures

PLAN = "plan-1"


def shard_of(listing) -> Shard:  # type: ignore[no-untyped-def]
    return Shard(shard_id=shard_id(listing, model="counting-embedder"), objects=listing)


def oracle(images: dict[str, bytes], keys: list[str]) -> np.ndarray:
    return np.vstack([pixel_vector(Image.open(io.BytesIO(images[key]))) for key in keys])


def test_rows_are_saved_in_input_order_each_with_its_own_vector(where, options, put) -> None:
    images = pictures(7)
    listing = put(images)[::-1]  # an order the shard keeps, whatever it is
    embedder = CountingEmbedder(batch_size=3)
    seen: list[int] = []

    outcome = embed_shard(
        where, options, shard_of(listing), plan_id=PLAN, embedder=embedder, progress=seen.append
    )

    result = outcome.result
    assert result.rows == work.Rows.of(listing)
    assert (result.model, result.plan_id, result.skipped) == (embedder.identity, PLAN, [])
    vectors = work.load_vectors(where.client, bucket=where.bucket, key=result.vectors_key)
    np.testing.assert_allclose(vectors, oracle(images, result.rows.keys), atol=1e-6)
    assert (outcome.embedded, outcome.resumed) == (7, False)
    assert (embedder.calls, embedder.images) == (3, 7)  # batches of 3
    assert sum(seen) == 7
    assert work.load_result(where, shard_id=result.shard_id) == result


def test_undecodable_objects_are_skipped_with_a_reason_and_the_rest_embedded(
    where, options, put
) -> None:
    images = {
        **pictures(3),
        "animals/broken.png": b"not an image at all",
        "animals/empty.jpg": b"",
        "animals/truncated.png": png_bytes(5, size=(64, 64))[:100],
    }
    listing = put(images)
    embedder = CountingEmbedder()

    outcome = embed_shard(where, options, shard_of(listing), plan_id=PLAN, embedder=embedder)

    broken = ["animals/broken.png", "animals/empty.jpg", "animals/truncated.png"]
    result = outcome.result
    assert sorted(s.key for s in result.skipped) == broken
    assert all(s.reason and s.cause == "image" for s in result.skipped)
    etags = {obj.key: obj.etag for obj in listing}
    assert all(s.etag == etags[s.key] for s in result.skipped)
    assert result.rows.keys == [obj.key for obj in listing if obj.key not in broken]
    vectors = work.load_vectors(where.client, bucket=where.bucket, key=result.vectors_key)
    np.testing.assert_allclose(vectors, oracle(images, result.rows.keys), atol=1e-6)
    assert outcome.summary() == {
        "shard_id": result.shard_id,
        "embedded": 3,
        "skipped": 3,
        "resumed": False,
    }


def test_a_second_call_resumes_without_embedding(where, options, put) -> None:
    shard = shard_of(put(pictures(5)))
    first = embed_shard(where, options, shard, plan_id=PLAN, embedder=CountingEmbedder())
    embedder = CountingEmbedder()
    seen: list[int] = []

    again = embed_shard(
        where, options, shard, plan_id="plan-2", embedder=embedder, progress=seen.append
    )

    assert again.result == first.result  # the plan that embedded it, its vectors
    assert (again.embedded, again.resumed) == (0, True)
    assert embedder.calls == 0
    assert seen == [5]


def test_a_result_of_another_model_is_not_resumed(where, options, put) -> None:
    # (Shard ids name the model, so a plan never hands this shard to another model; the check
    # guards against a result that says otherwise.)
    shard = shard_of(put(pictures(4)))
    embed_shard(where, options, shard, plan_id=PLAN, embedder=CountingEmbedder(identity="old"))
    embedder = CountingEmbedder(identity="new")

    outcome = embed_shard(where, options, shard, plan_id=PLAN, embedder=embedder)

    assert not outcome.resumed and embedder.images == 4


def test_a_shard_of_nothing_but_broken_objects_saves_an_empty_result(where, options, put) -> None:
    listing = put({"animals/a.png": b"x", "animals/b.png": b"y"})
    embedder = CountingEmbedder()
    outcome = embed_shard(where, options, shard_of(listing), plan_id=PLAN, embedder=embedder)
    assert len(outcome.result.rows) == 0 and len(outcome.result.skipped) == 2
    assert embedder.calls == 0
