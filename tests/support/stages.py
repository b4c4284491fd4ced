"""Helpers for the build stages' unit tests: small pictures, the keys under a prefix, and one
local build (plan → embed every shard → merge) run stage by stage."""

from __future__ import annotations

from image_search.artefacts.location import IndexLocation
from image_search.build.merge_stage import merge_build
from image_search.build.options import BuildOptions
from image_search.build.plan_stage import PlannedBuild, plan_build
from image_search.build.report import BuildReport
from image_search.build.shard_stage import embed_shard
from image_search.model.embedder import Embedder
from image_search.storage import s3
from tests.support.factories import png_bytes


def pictures(count: int, *, folder: str = "animals", seed: int = 0) -> dict[str, bytes]:
    """``count`` distinct 8 x 8 PNGs under ``folder``."""
    return {f"{folder}/img{i:03d}.png": png_bytes(seed + i, size=(8, 8)) for i in range(count)}


def keys_under(where: IndexLocation, prefix: str) -> set[str]:
    listed = s3.list_objects(where.client, bucket=where.bucket, prefix=prefix)
    return {obj["Key"] for obj in listed}


def embed_all(
    where: IndexLocation, options: BuildOptions, planned: PlannedBuild, embedder: Embedder
) -> None:
    for shard in planned.shards:
        embed_shard(where, options, shard, plan_id=planned.plan.plan_id, embedder=embedder)


def build_here(where: IndexLocation, options: BuildOptions, embedder: Embedder) -> BuildReport:
    """Plan, embed every shard and merge, as the local engine does (without the lease)."""
    planned = plan_build(where, options, model=embedder.identity)
    if not planned.has_work:
        return planned.report
    embed_all(where, options, planned, embedder)
    return merge_build(where, options, planned.plan)
