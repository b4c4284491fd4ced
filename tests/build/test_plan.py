"""What a build has to do, from the listing and the last build alone (no S3): the diff by key and
ETag, the counts, and whether the last build already holds exactly these images."""

from __future__ import annotations

import numpy as np
import pytest

from image_search.artefacts.manifest import (
    DuplicatesRef,
    Item,
    Metadata,
    Skipped,
    folder_ranges,
)
from image_search.build.plan import diff, item_of, same_as_previous, tally
from image_search.build.previous import Previous
from image_search.storage.s3 import S3Object

MODEL = "m"


def obj(key: str, etag: str = "e") -> S3Object:
    return S3Object(key, key.split("/")[0], etag, 10)


def metadata(items: list[Item], **fields: object) -> Metadata:
    values: dict[str, object] = {
        "build_id": "b1",
        "model": MODEL,
        "dim": 4,
        "index_type": "flat",
        "count": len(items),
        "bucket": "bucket",
        "folders": folder_ranges(items),
        "items": items,
        "sorted_by": "key",
        "duplicates": DuplicatesRef(key="d", min_score=0.95, groups=0),
        **fields,
    }
    return Metadata.model_validate(values)


def last(objects: list[S3Object], *, skipped: list[Skipped] | None = None) -> Previous:
    items = [item_of(o) for o in objects]
    return Previous(
        pointer_etag='"p"',
        metadata=metadata(items, skipped=skipped or []),
        vectors=np.zeros((len(items), 4), dtype=np.float32),
    )


BEFORE = [obj("a/1.png"), obj("a/2.png"), obj("b/3.png"), obj("b/4.png")]


def test_without_a_last_build_everything_is_to_embed() -> None:
    plan = diff(BEFORE, Previous(), model=MODEL, full=False)
    assert plan.todo == BEFORE and plan.rows == {} and plan.reused == []


def test_unchanged_keys_reuse_their_rows_and_the_rest_is_to_embed() -> None:
    now = [obj("a/0.png"), obj("a/1.png"), obj("a/2.png", "new"), obj("b/4.png")]  # 3 removed
    plan = diff(now, last(BEFORE), model=MODEL, full=False)
    assert plan.todo == [obj("a/0.png"), obj("a/2.png", "new")]
    assert plan.reused == [obj("a/1.png"), obj("b/4.png")]
    assert [plan.rows[(o.key, o.etag)] for o in plan.reused] == [0, 3]
    assert plan.pointer_etag == '"p"'


@pytest.mark.parametrize(
    ("model", "full", "vectors"), [("other", False, 4), (MODEL, True, 4), (MODEL, False, 3)]
)
def test_another_model_a_full_build_or_short_vectors_reuse_nothing(model, full, vectors) -> None:
    previous = last(BEFORE)
    previous = Previous(
        pointer_etag=previous.pointer_etag,
        metadata=previous.metadata,
        vectors=previous.vectors[:vectors],
    )
    plan = diff(BEFORE, previous, model=model, full=full)
    assert plan.todo == BEFORE and plan.rows == {}


def test_images_that_did_not_decode_stay_skipped_until_they_change() -> None:
    skipped = [
        Skipped(key="a/bad.png", reason="not an image", etag="e", cause="image"),
        Skipped(key="a/changed.png", reason="not an image", etag="old", cause="image"),
        Skipped(key="a/failed.png", reason="timed out", etag="e", cause="download"),
    ]
    now = [*BEFORE, obj("a/bad.png"), obj("a/changed.png", "new"), obj("a/failed.png")]
    plan = diff(now, last(BEFORE, skipped=skipped), model=MODEL, full=False)
    assert plan.still_broken == skipped[:1]
    assert [o.key for o in plan.todo] == ["a/changed.png", "a/failed.png"]
    assert "a/bad.png" not in [item.key for item in plan.items]
    assert diff(now, last(BEFORE, skipped=skipped), model=MODEL, full=True).still_broken == []


def test_items_are_sorted_by_key() -> None:
    now = [obj("b/x.png"), obj("a/z.png"), obj("a/b/y.png")]
    plan = diff(now, Previous(), model=MODEL, full=False)
    assert [item.key for item in plan.items] == ["a/b/y.png", "a/z.png", "b/x.png"]


def test_tally_counts_added_updated_removed_reused_and_embedded() -> None:
    previous = last(BEFORE).metadata
    items = [item_of(o) for o in (obj("a/0.png"), obj("a/1.png"), obj("a/2.png", "new"))]
    skipped = [Skipped(key="z/9.png", reason="r"), Skipped(key="c/8.png", reason="r")]
    report = tally(previous, items, skipped=skipped, embedded=2)
    assert (report.count, report.added, report.updated, report.removed) == (3, 1, 1, 2)
    assert (report.reused, report.embedded) == (1, 2)
    assert [s.key for s in report.skipped] == ["c/8.png", "z/9.png"]


def same(previous: Metadata | None, items: list[Item], **overrides: object) -> bool:
    arguments: dict[str, object] = {
        "model": MODEL,
        "bucket": "bucket",
        "index_type": "flat",
        "duplicate_score": 0.95,
        "photos": True,
        **overrides,
    }
    return same_as_previous(previous, items, **arguments)  # type: ignore[arg-type]


def test_same_as_previous_only_for_the_same_items_built_the_same_way() -> None:
    items = [item_of(o) for o in BEFORE]
    previous = last(BEFORE).metadata
    assert same(previous, items)
    assert not same(None, items)
    assert not same(previous, items[:3])
    assert not same(previous, [*items[:3], item_of(obj("b/4.png", "new"))])
    assert not same(previous, items, model="other")
    assert not same(previous, items, bucket="a-copy")  # republished, naming the bucket it is in
    assert not same(previous, items, index_type="hnsw")
    assert not same(previous, items, duplicate_score=0.9)
    # Built before key order or near-duplicates: published again.
    assert not same(metadata(items, sorted_by="folder"), items)
    assert not same(metadata(items, duplicates=None), items)
    # Built before photo fields: published again, with them.
    assert not same(previous, items, photos=False)
    # "ivfpq" is what builds before ivf-pq existed called ivf-sq8.
    assert same(metadata(items, index_type="ivfpq"), items, index_type="ivf-sq8")
