"""The build's three stages, and the local engine that runs them all in this process.

plan (list, diff by key + ETag, shards) → embed each shard (downloads and decoding in threads,
ahead of the model) → merge (FAISS, publish, clean up). Incremental by default: objects whose key
and ETag are unchanged reuse their stored vector, so a rebuild costs one listing plus the images
that changed. The Ray engine (``ray_engine``) embeds the shards elsewhere around the same plan
and merge; on AWS each stage is a Lambda (``step_functions``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tqdm import tqdm

from image_search.artefacts.location import IndexLocation
from image_search.build.merge_stage import merge_build
from image_search.build.options import BuildOptions
from image_search.build.plan_stage import PlannedBuild, plan_build
from image_search.build.report import BuildReport
from image_search.build.shard_stage import embed_shard
from image_search.config import Settings
from image_search.model.embedder import Embedder
from image_search.storage import lease, s3

LOG = logging.getLogger(__name__)

__all__ = ["run_build", "run_stages"]


def run_build(
    settings: Settings,
    *,
    client: s3.S3Client,
    embedder: Embedder,
    full: bool = False,
    dry_run: bool = False,
) -> BuildReport:
    """Build and publish an index of ``settings.bucket``, embedding here, one shard at a time.

    ``full`` re-embeds every image; ``dry_run`` only counts what would change. Shards finished by
    an interrupted run are not embedded again.
    """

    where = IndexLocation(client, settings.bucket, settings.index_prefix)
    options = BuildOptions.of(settings)

    def embed_here(planned: PlannedBuild) -> None:
        total = sum(len(shard.objects) for shard in planned.shards)
        with tqdm(total=total, unit="img", desc="embedding", disable=None) as progress:
            for shard in planned.shards:
                embed_shard(
                    where,
                    options,
                    shard,
                    plan_id=planned.plan.plan_id,
                    embedder=embedder,
                    progress=progress.update,
                )

    return run_stages(
        where,
        options,
        model=embedder.identity,
        full=full,
        dry_run=dry_run,
        embed=embed_here,
    )


def run_stages(
    where: IndexLocation,
    options: BuildOptions,
    *,
    model: str,
    full: bool,
    dry_run: bool,
    embed: Callable[[PlannedBuild], object],
) -> BuildReport:
    """Plan, ``embed`` the plan's shards (wherever the engine runs them), merge and publish.

    ``model`` is the embedder's identity, which the build records. A build holds the build lease
    from start to end (``BuildRunningError`` while another build
    holds it); a dry run takes none and writes nothing.
    """
    started = time.monotonic()
    if dry_run:
        report = plan_build(where, options, model=model, full=full, dry_run=True).report
    else:
        with lease.held(
            where.client,
            bucket=where.bucket,
            key=where.lease_key,
            seconds=options.build_lease_seconds,
        ) as held:
            planned = plan_build(where, options, model=model, full=full)
            if planned.has_work:
                embed(planned)
                report = merge_build(where, options, planned.plan, held=held)
            else:
                report = planned.report
    report.seconds = time.monotonic() - started
    LOG.info(report.line())
    return report
