"""The local engine: plan, embed, merge under the build lease; a dry run takes no lease and writes
nothing; a build with nothing to do embeds nothing; another build's lease stops this one."""

from __future__ import annotations

import pytest

from image_search.build.pipeline import run_build, run_stages
from image_search.build.plan_stage import PlannedBuild
from image_search.config import Settings
from image_search.errors import BuildRunningError
from image_search.storage import lease
from tests.support.embedders import CountingEmbedder
from tests.support.stages import embed_all, keys_under, pictures

MODEL = CountingEmbedder().identity


def test_run_build_publishes_then_finds_nothing_to_do(where, put) -> None:
    put(pictures(6))
    settings = Settings(bucket=where.bucket, index_prefix=where.prefix, shard_size=2)
    first = run_build(settings, client=where.client, embedder=CountingEmbedder())
    assert first.published and first.count == 6 and first.embedded == 6
    embedder = CountingEmbedder()

    again = run_build(settings, client=where.client, embedder=embedder)

    assert embedder.calls == 0
    assert not again.published and again.build_id == first.build_id
    assert keys_under(where, where.work_prefix) == set()
    assert keys_under(where, where.lease_key) == set()  # released


def test_the_stages_run_under_the_lease_and_a_dry_run_takes_none(where, options, put) -> None:
    put(pictures(5))
    seen: list[set[str]] = []

    def embed(planned: PlannedBuild) -> None:
        seen.append(keys_under(where, where.lease_key))
        embed_all(where, options, planned, CountingEmbedder())

    dry = run_stages(where, options, model=MODEL, full=False, dry_run=True, embed=embed)
    assert seen == [] and keys_under(where, where.prefix) == set()
    assert dry.count == 5 and not dry.published

    report = run_stages(where, options, model=MODEL, full=False, dry_run=False, embed=embed)

    assert seen == [{where.lease_key}]
    assert report.published and report.count == 5
    assert keys_under(where, where.lease_key) == set()


def test_another_builds_lease_stops_the_build_before_it_plans(where, options, put) -> None:
    put(pictures(3))
    other = lease.acquire(where.client, bucket=where.bucket, key=where.lease_key, seconds=600)
    try:
        with pytest.raises(BuildRunningError, match="another build is running"):
            run_stages(where, options, model=MODEL, full=False, dry_run=False, embed=print)
        assert keys_under(where, where.prefix) == {where.lease_key}  # nothing planned
    finally:
        other.release()
