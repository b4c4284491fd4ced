"""Stage 1: list the bucket, diff it against the published build (key + ETag), cut the rest into
shards and save the plan under ``<prefix>work/build/``.

It reads the previous build's metadata but not its vectors: which rows to keep is all the plan
needs, and the merge reads the vectors once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import ValidationError

from image_search.build import work
from image_search.build.plan import Plan, compare, unchanged
from image_search.build.report import BuildReport
from image_search.build.shards import Shard, cut
from image_search.config import Settings
from image_search.errors import ImageSearchError, NoImagesError
from image_search.storage import artefacts, s3
from image_search.storage.manifest import Metadata, Pointer

LOG = logging.getLogger(__name__)

# An embeddings.npy holds count × dim float32 after a header of at most this many bytes.
NPY_HEADER_LIMIT = 65_536


@dataclass
class PlannedBuild:
    plan: work.BuildPlan
    report: BuildReport
    shards: list[Shard] = field(default_factory=list)
    # False for a dry run and when nothing changed: no shard to embed, nothing to publish.
    has_work: bool = True


def plan_build(
    settings: Settings, *, client: s3.S3Client, full: bool = False, dry_run: bool = False
) -> PlannedBuild:
    """The plan for one build; saved (with its shard inputs) unless there is nothing to do."""
    objects = s3.list_images(
        client,
        bucket=settings.bucket,
        folders=settings.folders,
        exclude_prefix=settings.index_prefix,
    )
    return plan_listing(settings, objects, client=client, full=full, dry_run=dry_run)


def plan_listing(
    settings: Settings,
    objects: list[s3.S3Object],
    *,
    client: s3.S3Client,
    full: bool = False,
    dry_run: bool = False,
) -> PlannedBuild:
    """The plan for ``objects``, the bucket's images sorted by (folder, key) as listed."""
    bucket, prefix = settings.bucket, settings.index_prefix
    if not objects:
        where = ", ".join(settings.folders) or "any folder"
        raise NoImagesError(f"no images found in s3://{bucket}/ ({where})")
    pointer = artefacts.read_pointer(client, bucket=bucket, index_prefix=prefix)
    previous = _previous_metadata(client, bucket=bucket, pointer=pointer)
    rows = {} if full else _reusable_rows(client, settings, pointer, previous)
    reused = [obj for obj in objects if (obj.key, obj.etag) in rows]
    todo = [obj for obj in objects if (obj.key, obj.etag) not in rows]
    diff = Plan(objects=objects, known={}, previous=previous, todo=todo)
    report = compare(diff)
    plan = work.BuildPlan(
        plan_id=work.new_plan_id(),
        model=settings.model,
        previous=pointer if reused else None,
        added=report.added,
        updated=report.updated,
        removed=report.removed,
        reused=work.Rows.of(reused),
        reused_rows=[rows[(obj.key, obj.etag)] for obj in reused],
    )
    if dry_run or unchanged(diff, report, settings):
        report.build_id = previous.build_id if previous else None
        report.count = len(objects) - len(todo)
        return PlannedBuild(plan=plan, report=report, has_work=False)
    shards = cut(todo, size=settings.shard_size, model=settings.model)
    plan.shards = [work.ShardRef(shard_id=s.shard_id, count=len(s.objects)) for s in shards]
    work.save_plan(client, bucket=bucket, index_prefix=prefix, plan=plan, shards=shards)
    return PlannedBuild(plan=plan, report=report, shards=shards)


def _previous_metadata(
    client: s3.S3Client, *, bucket: str, pointer: Pointer | None
) -> Metadata | None:
    if pointer is None:
        return None
    try:
        data = s3.get_bytes(client, bucket=bucket, key=pointer.metadata_key)
        return Metadata.model_validate_json(data)
    except (ImageSearchError, ValidationError) as exc:
        LOG.warning(
            "previous build %s unreadable (%s): embedding everything", pointer.build_id, exc
        )
        return None
    except Exception as exc:
        if s3.is_missing(exc):
            LOG.warning("previous build %s is gone: embedding everything", pointer.build_id)
            return None
        raise


def _reusable_rows(
    client: s3.S3Client, settings: Settings, pointer: Pointer | None, previous: Metadata | None
) -> dict[tuple[str, str], int]:
    """(key, etag) → row in the previous build's embeddings, when those can be reused."""
    if pointer is None or previous is None:
        return {}
    if previous.model != settings.model:
        LOG.info("model changed (%s → %s): embedding everything", previous.model, settings.model)
        return {}
    if not _embeddings_fit(client, bucket=settings.bucket, pointer=pointer, previous=previous):
        LOG.warning(
            "build %s: embeddings missing or the wrong size; not reusing", previous.build_id
        )
        return {}
    return {(item.key, item.etag): row for row, item in enumerate(previous.items)}


def _embeddings_fit(
    client: s3.S3Client, *, bucket: str, pointer: Pointer, previous: Metadata
) -> bool:
    """The embeddings file exists with the size ``count × dim`` float32 needs (a HEAD request)."""
    if pointer.embeddings_key is None:
        return False
    try:
        with s3.translate_errors(bucket):
            size = int(
                client.head_object(Bucket=bucket, Key=pointer.embeddings_key)["ContentLength"]
            )
    except Exception as exc:
        if s3.is_missing(exc):
            return False
        raise
    payload = previous.count * previous.dim * 4
    return payload < size <= payload + NPY_HEADER_LIMIT
