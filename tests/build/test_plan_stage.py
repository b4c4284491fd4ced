"""Stage 1, the plan: shards of ``options.shard_size`` saved under the work keys; no work when
nothing changed; a dry run writes nothing; no images is an error that names the folders."""

from __future__ import annotations

from dataclasses import replace

import pytest

from image_search.build import work
from image_search.build.plan_stage import plan_build, plan_listing
from image_search.errors import NoImagesError
from tests.support.embedders import CountingEmbedder
from tests.support.factories import png_bytes
from tests.support.stages import build_here, keys_under, pictures

MODEL = CountingEmbedder().identity


def test_plan_cuts_shards_of_the_shard_size_and_saves_them_under_the_work_keys(
    where, options, put
) -> None:
    listing = put(pictures(30))
    planned = plan_listing(where, options, listing, model=MODEL)

    assert planned.has_work
    assert [obj for shard in planned.shards for obj in shard.objects] == listing
    # shard_size 4: from half to twice that, but the last
    assert all(2 <= len(s.objects) <= 8 for s in planned.shards[:-1])
    assert len(planned.shards) >= 30 // 8
    plan = planned.plan
    assert [(r.shard_id, r.count) for r in plan.shards] == [
        (s.shard_id, len(s.objects)) for s in planned.shards
    ]
    assert work.load_plan(where, plan_id=plan.plan_id) == plan
    for shard in planned.shards:
        assert work.load_shard(where, shard_id=shard.shard_id) == shard
    expected = {where.plan_key(plan.plan_id), where.items_key(plan.plan_id)}
    expected |= {where.shard_input_key(s.shard_id) for s in planned.shards}
    assert keys_under(where, where.prefix) == expected
    assert (plan.model, plan.previous, plan.pointer_etag, len(plan.reused)) == (
        MODEL,
        None,
        None,
        0,
    )
    report = planned.report
    assert (report.count, report.added, report.reused, report.removed) == (30, 30, 0, 0)


def test_plan_build_lists_only_the_configured_folders_and_never_the_index(
    where, options, put
) -> None:
    put({**pictures(3), **pictures(2, folder="nature", seed=50), "index/stray.png": png_bytes(1)})
    planned = plan_build(where, replace(options, folders=("nature",)), model=MODEL)
    listed = [obj.key for shard in planned.shards for obj in shard.objects]
    assert listed == ["nature/img000.png", "nature/img001.png"]


def test_a_dry_run_writes_nothing(where, options, put) -> None:
    put(pictures(9))
    before = keys_under(where, "")
    planned = plan_build(where, options, model=MODEL, dry_run=True)
    assert not planned.has_work and planned.shards == []
    assert planned.report.count == 9 and planned.report.added == 9
    assert keys_under(where, "") == before


def test_an_unchanged_bucket_has_no_work(where, options, put) -> None:
    put(pictures(6))
    published = build_here(where, options, CountingEmbedder())
    assert published.published
    before = keys_under(where, "")

    planned = plan_build(where, options, model=MODEL)

    assert not planned.has_work and planned.shards == []
    assert planned.report.build_id == published.build_id
    assert (planned.report.count, planned.report.reused, planned.report.added) == (6, 6, 0)
    assert keys_under(where, "") == before  # no plan saved


def test_a_changed_image_is_the_only_work_and_the_rest_is_reused(where, options, put) -> None:
    put(pictures(6))
    published = build_here(where, options, CountingEmbedder())
    listing = put({"animals/img002.png": png_bytes(99, size=(8, 8))})

    planned = plan_build(where, options, model=MODEL)

    assert [obj.key for s in planned.shards for obj in s.objects] == ["animals/img002.png"]
    plan = planned.plan
    assert plan.previous is not None and plan.previous.build_id == published.build_id
    assert plan.pointer_etag is not None
    reused = [obj for obj in listing if obj.key != "animals/img002.png"]
    assert plan.reused == work.Rows.of(reused)
    assert plan.reused_rows == [0, 1, 3, 4, 5]  # their rows in the published build (by key)
    assert (planned.report.updated, planned.report.reused) == (1, 5)


def test_another_model_or_a_full_build_embeds_everything(where, options, put) -> None:
    put(pictures(5))
    build_here(where, options, CountingEmbedder())
    for planned in (
        plan_build(where, options, model="another-model"),
        plan_build(where, options, model=MODEL, full=True),
    ):
        assert sum(len(s.objects) for s in planned.shards) == 5
        assert len(planned.plan.reused) == 0


@pytest.mark.parametrize(("folders", "named"), [((), "any folder"), (("a", "b"), "a, b")])
def test_no_images_is_an_error_naming_the_bucket_and_folders(
    where, options, folders, named
) -> None:
    with pytest.raises(NoImagesError, match=f"s3://{where.bucket}/ \\({named}\\)"):
        plan_build(where, replace(options, folders=folders), model=MODEL)
    assert keys_under(where, "") == set()
