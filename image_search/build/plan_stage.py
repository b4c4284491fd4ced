"""Stage 1: list the bucket, diff it against the published build (key + ETag), cut what is left
to embed into shards and save the plan under ``<prefix>work/build/``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from image_search.artefacts.location import IndexLocation
from image_search.build import work
from image_search.build.options import BuildOptions
from image_search.build.plan import Plan, diff, same_as_previous, tally
from image_search.build.previous import read_previous
from image_search.build.report import BuildReport
from image_search.build.shards import Shard, cut
from image_search.errors import NoImagesError
from image_search.index import faiss_index
from image_search.storage import s3

LOG = logging.getLogger(__name__)


@dataclass
class PlannedBuild:
    plan: work.BuildPlan
    report: BuildReport  # what the build would give if every image to embed decodes
    shards: list[Shard] = field(default_factory=list)
    # False for a dry run and when nothing changed: no shard to embed, nothing to publish.
    has_work: bool = True


def plan_build(
    where: IndexLocation,
    options: BuildOptions,
    *,
    model: str,
    full: bool = False,
    dry_run: bool = False,
    lease: work.HeldLease | None = None,
) -> PlannedBuild:
    """The plan for one build; saved (with its shard inputs) unless there is nothing to do.

    ``model`` is the embedder's identity (``Embedder.identity``), which builds record: an ONNX
    export and its source model under torch continue each other's builds.
    """
    objects = s3.list_images(
        where.client,
        bucket=where.bucket,
        folders=list(options.folders),
        exclude_prefix=where.prefix,
    )
    return plan_listing(
        where, options, objects, model=model, full=full, dry_run=dry_run, lease=lease
    )


def plan_listing(
    where: IndexLocation,
    options: BuildOptions,
    objects: list[s3.S3Object],
    *,
    model: str,
    full: bool = False,
    dry_run: bool = False,
    lease: work.HeldLease | None = None,
) -> PlannedBuild:
    """The plan for ``objects``, the bucket's images sorted by (folder, key) as listed."""
    if not objects:
        folders = ", ".join(options.folders) or "any folder"
        raise NoImagesError(f"no images found in s3://{where.bucket}/ ({folders})")
    last = read_previous(where)
    plan = diff(objects, last, model=model, full=full)
    reused = plan.reused
    if not plan.todo and not reused:
        # Every listed image is one the last build found undecodable and is unchanged: there is
        # nothing to embed or reuse, so no plan is saved for a merge that could only fail.
        raise NoImagesError(
            f"none of the {len(plan.still_broken)} images in s3://{where.bucket}/ could be "
            "decoded (they stay skipped until they change; --full tries them again)"
        )
    saved = work.BuildPlan(
        plan_id=work.new_plan_id(),
        model=model,
        full=full,
        previous=plan.pointer if plan.previous is not None else None,
        pointer_etag=plan.pointer_etag,
        reused=work.Rows.of(reused),
        reused_rows=[plan.rows[(obj.key, obj.etag)] for obj in reused],
        folded=[segment.segment_id for segment, _ in last.segments] if plan.rows else [],
        still_broken=plan.still_broken,
        lease=lease,
    )
    report = _forecast(plan)
    if dry_run or _unchanged(where, options, plan, model=model, full=full, report=report):
        return PlannedBuild(plan=saved, report=report, has_work=False)
    shards = cut(plan.todo, size=options.shard_size, model=model, salt=saved.shard_salt)
    saved.shards = [work.ShardRef(shard_id=s.shard_id, count=len(s.objects)) for s in shards]
    work.save_plan(where, plan=saved, shards=shards)
    return PlannedBuild(plan=saved, report=report, shards=shards)


def _forecast(plan: Plan) -> BuildReport:
    """The counts supposing every object to embed decodes (what a dry run reports)."""
    items = plan.items
    report = tally(plan.previous, items, skipped=plan.still_broken, embedded=0)
    report.reused = len(items) - len(plan.todo)
    report.build_id = plan.previous.build_id if plan.previous else None
    return report


def _unchanged(
    where: IndexLocation,
    options: BuildOptions,
    plan: Plan,
    *,
    model: str,
    full: bool,
    report: BuildReport,
) -> bool:
    """Nothing to embed and the last build holds exactly these images, built the same way
    (and has no segments: a build folds them in)."""
    if full or plan.todo or not report.count or (plan.pointer and plan.pointer.segments):
        return False
    index_type = faiss_index.choose_type(options.index_type, report.count)
    same = same_as_previous(
        plan.previous,
        plan.items,
        photos=plan.pointer is not None and plan.pointer.photos_key is not None,
        model=model,
        bucket=where.bucket,
        index_type=index_type,
        duplicate_score=options.duplicate_score,
    )
    if not same:
        return False
    report.index_type = index_type
    return True
