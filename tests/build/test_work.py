"""The build's work files: saved under IndexLocation's work keys, read back as saved, the first
shard result kept, and cleaned up without touching a newer plan's files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from image_search.artefacts.location import IndexLocation
from image_search.build import work
from image_search.build.shards import cut
from image_search.storage import s3
from tests.support.stages import keys_under

MODEL = "counting-embedder"


def objects(count: int, *, folder: str = "animals") -> list[s3.S3Object]:
    return [
        s3.S3Object(f"{folder}/img{i:03d}.png", folder, f"etag{i}", 100 + i) for i in range(count)
    ]


def saved_plan(where: IndexLocation, *, count: int = 10, **fields: object) -> work.BuildPlan:
    shards = cut(objects(count), size=4, model=MODEL)
    plan = work.BuildPlan(
        plan_id=work.new_plan_id(),
        model=MODEL,
        shards=[work.ShardRef(shard_id=s.shard_id, count=len(s.objects)) for s in shards],
        **fields,  # type: ignore[arg-type]
    )
    work.save_plan(where, plan=plan, shards=shards)
    return plan


def result_of(shard_id: str, *, plan_id: str = "p1") -> work.ShardResult:
    return work.ShardResult(
        shard_id=shard_id, model=MODEL, plan_id=plan_id, vectors_key="", rows=work.Rows()
    )


def test_rows_keep_objects_as_columns_and_refuse_ragged_columns() -> None:
    listed = objects(3, folder="nature")
    rows = work.Rows.of(listed)
    assert rows.keys == [o.key for o in listed] and len(rows) == 3
    assert rows.objects() == listed
    with pytest.raises(ValidationError, match="differ in length"):
        work.Rows(keys=["a/b.png"], etags=[], sizes=[1])


def test_a_saved_plan_and_its_shards_read_back_under_the_work_keys(where) -> None:
    plan = saved_plan(where, count=10)
    assert work.load_plan(where, plan_id=plan.plan_id) == plan
    items = json.loads(
        where.client.get_object(Bucket=where.bucket, Key=where.items_key(plan.plan_id))[
            "Body"
        ].read()
    )
    assert items == [{"shard_id": ref.shard_id} for ref in plan.shards]
    loaded = [work.load_shard(where, shard_id=ref.shard_id) for ref in plan.shards]
    assert [obj for shard in loaded for obj in shard.objects] == objects(10)
    expected = {where.plan_key(plan.plan_id), where.items_key(plan.plan_id)} | {
        where.shard_input_key(ref.shard_id) for ref in plan.shards
    }
    assert keys_under(where, "") == expected
    assert all(key.startswith(where.work_prefix) for key in expected)


def test_no_result_until_one_is_saved_and_it_names_its_own_vectors(where) -> None:
    assert work.load_result(where, shard_id="s1") is None
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    saved = work.save_result(where, result=result_of("s1"), vectors=vectors)
    assert saved.vectors_key.startswith(where.shard_folder("s1") + "vectors-")
    assert work.load_result(where, shard_id="s1") == saved
    loaded = work.load_vectors(where.client, bucket=where.bucket, key=saved.vectors_key)
    np.testing.assert_array_equal(loaded, vectors)
    assert loaded.dtype == np.float32


def test_the_first_result_saved_wins_with_its_own_vectors(where) -> None:
    first = work.save_result(
        where, result=result_of("s1", plan_id="a"), vectors=np.ones((1, 2), np.float32)
    )
    second = work.save_result(
        where, result=result_of("s1", plan_id="b"), vectors=np.zeros((1, 2), np.float32)
    )
    assert second == first and second.plan_id == "a"
    kept = work.load_vectors(where.client, bucket=where.bucket, key=second.vectors_key)
    np.testing.assert_array_equal(kept, np.ones((1, 2)))


def test_clean_deletes_the_plans_files_and_leaves_a_newer_plans(where) -> None:
    old = saved_plan(where, count=10, created_at=datetime.now(UTC) - timedelta(hours=1))
    for ref in old.shards:
        work.save_result(where, result=result_of(ref.shard_id), vectors=np.ones((1, 2), np.float32))
    where.client.put_object(
        Bucket=where.bucket, Key=where.map_results_prefix + "x/manifest.json", Body=b"{}"
    )
    where.client.put_object(Bucket=where.bucket, Key=where.checkpoint_key, Body=b"old")
    newer = saved_plan(where, count=3)  # another build's plan, made after ``old``
    newer_keys = keys_under(where, where.plan_folder(newer.plan_id)) | {
        where.shard_input_key(ref.shard_id) for ref in newer.shards
    }
    where.client.put_object(Bucket=where.bucket, Key="animals/keep.png", Body=b"image")

    deleted = work.clean(where, plan=old)

    assert keys_under(where, "") == newer_keys | {"animals/keep.png"}
    # Its plan and item list, each shard's input, result and vectors, Step Functions' output.
    assert deleted == 2 + 3 * len(old.shards) + 1


def test_clean_deletes_what_earlier_unfinished_plans_left(where) -> None:
    saved_plan(where, count=5)
    later = saved_plan(where, count=3, created_at=datetime.now(UTC) + timedelta(hours=1))
    work.clean(where, plan=later)
    assert keys_under(where, where.work_prefix) == set()


def test_in_parallel_keeps_order_and_raises_the_first_error() -> None:
    assert work.in_parallel(lambda n: n * n, range(20)) == [n * n for n in range(20)]

    def fail_on_three(n: int) -> int:
        if n == 3:
            raise ValueError("three")
        return n

    with pytest.raises(ValueError, match="three"):
        work.in_parallel(fail_on_three, range(10))
