"""The local engine: the build's three stages in this process, one shard after another.

plan (list, diff by key + ETag, shards) → embed each shard (downloads and decoding in threads,
ahead of the model) → merge (FAISS, publish, clean up). Incremental by default: objects whose key
and ETag are unchanged reuse their stored vector, so a rebuild costs one listing plus the images
that changed. The other engines (``ray_engine``, ``step_functions``) run the same stages
elsewhere.
"""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from image_search.build.merge_stage import merge_build
from image_search.build.plan_stage import plan_build
from image_search.build.report import BuildReport
from image_search.build.shard_stage import ImageEmbedder, embed_shard
from image_search.config import Settings
from image_search.storage import s3

LOG = logging.getLogger(__name__)

__all__ = ["ImageEmbedder", "run_build"]


def run_build(
    settings: Settings,
    *,
    client: s3.S3Client,
    embedder: ImageEmbedder,
    full: bool = False,
    dry_run: bool = False,
) -> BuildReport:
    """Build and publish an index of ``settings.bucket``.

    ``full`` re-embeds every image; ``dry_run`` only counts what would change. Shards finished by
    an interrupted run are not embedded again.
    """
    started = time.monotonic()
    planned = plan_build(settings, client=client, full=full, dry_run=dry_run)
    if planned.has_work:
        total = sum(len(shard.objects) for shard in planned.shards)
        with tqdm(total=total, unit="img", desc="embedding", disable=None) as progress:
            for shard in planned.shards:
                embed_shard(
                    settings,
                    shard,
                    plan_id=planned.plan.plan_id,
                    client=client,
                    embedder=embedder,
                    progress=progress.update,
                )
        report = merge_build(settings, planned.plan, client=client)
    else:
        report = planned.report
    report.seconds = time.monotonic() - started
    LOG.info(report.line())
    return report
