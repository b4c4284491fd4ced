"""Cutting the work into shards: every object once, in order, sizes bounded, ids that name the
content, and cut points that survive an image added or removed elsewhere."""

from __future__ import annotations

from image_search.build.shards import cut
from image_search.storage.s3 import S3Object

MODEL = "tiny-model"


def listing(count: int, *, skip: int | None = None, extra: str | None = None) -> list[S3Object]:
    keys = [f"animals/img{i:05d}.jpg" for i in range(count) if i != skip]
    if extra is not None:
        keys = sorted([*keys, extra])
    return [S3Object(key, "animals", f"etag-{key}", 100) for key in keys]


def test_every_object_once_in_order_and_sizes_bounded() -> None:
    objects = listing(5000)
    shards = cut(objects, size=100, model=MODEL)
    assert [obj for shard in shards for obj in shard.objects] == objects
    assert all(50 <= len(shard.objects) <= 200 for shard in shards[:-1])
    assert 0 < len(shards[-1].objects) <= 200
    average = len(objects) / len(shards)
    assert 70 <= average <= 130, average
    assert len({shard.shard_id for shard in shards}) == len(shards)


def test_ids_name_the_model_and_every_key_and_etag() -> None:
    objects = listing(300)
    first = cut(objects, size=100, model=MODEL)
    assert [s.shard_id for s in cut(objects, size=100, model=MODEL)] == [s.shard_id for s in first]
    other_model = cut(objects, size=100, model="another-model")
    assert not {s.shard_id for s in other_model} & {s.shard_id for s in first}
    changed = [*objects[:10], S3Object(objects[10].key, "animals", "new-etag", 100), *objects[11:]]
    moved = {s.shard_id for s in cut(changed, size=100, model=MODEL)}
    # Only the shard holding the changed object gets a new id.
    assert len({s.shard_id for s in first} - moved) == 1


def test_a_salt_gives_every_shard_another_id() -> None:
    """A --full build salts its ids with its plan's: no result an earlier run saved is found."""
    objects = listing(300)
    plain = {s.shard_id for s in cut(objects, size=100, model=MODEL)}
    salted = cut(objects, size=100, model=MODEL, salt="plan-1")
    assert not {s.shard_id for s in salted} & plain
    assert [s.objects for s in salted] == [s.objects for s in cut(objects, size=100, model=MODEL)]


def test_an_image_added_or_removed_changes_few_shards() -> None:
    before = {s.shard_id for s in cut(listing(5000), size=100, model=MODEL)}
    for after_listing in (listing(5000, skip=2500), listing(5000, extra="animals/img02500b.jpg")):
        after = {s.shard_id for s in cut(after_listing, size=100, model=MODEL)}
        # The shard that held the change, and at most one neighbour when a size bound moved a cut.
        assert len(before - after) <= 2, len(before - after)


def test_tiny_sizes_and_empty_input() -> None:
    assert cut([], size=1000, model=MODEL) == []
    objects = listing(5)
    assert [len(s.objects) for s in cut(objects, size=1, model=MODEL)] == [1] * 5
    (whole,) = cut(objects, size=1000, model=MODEL)
    assert whole.objects == objects
