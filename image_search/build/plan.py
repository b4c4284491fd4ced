"""What a build has to do: list the bucket, diff it against the last build (key + ETag) and any
checkpoint, and count what was added, updated, reused and removed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from image_search.build.report import BuildReport
from image_search.config import Settings, canonical_index_type
from image_search.errors import NoImagesError
from image_search.model.vectors import Vectors
from image_search.storage import artefacts, checkpoint, s3
from image_search.storage.manifest import Metadata

LOG = logging.getLogger(__name__)


@dataclass
class Plan:
    objects: list[s3.S3Object]
    known: dict[tuple[str, str], Vectors]  # (key, etag) → vector from the last build/checkpoint
    previous: Metadata | None
    todo: list[s3.S3Object] = field(default_factory=list)


def make_plan(settings: Settings, *, client: s3.S3Client, full: bool) -> Plan:
    bucket, prefix = settings.bucket, settings.index_prefix
    objects = s3.list_images(client, bucket=bucket, folders=settings.folders, exclude_prefix=prefix)
    if not objects:
        where = ", ".join(settings.folders) or "any folder"
        raise NoImagesError(f"no images found in s3://{bucket}/ ({where})")
    known: dict[tuple[str, str], Vectors] = {}
    previous: Metadata | None = None
    pointer = artefacts.read_pointer(client, bucket=bucket, index_prefix=prefix)
    if pointer is not None:
        previous, old_vectors = artefacts.load_vectors(client, bucket=bucket, pointer=pointer)
        if previous.model != settings.model:
            LOG.info(
                "model changed (%s → %s): embedding everything", previous.model, settings.model
            )
        elif not full:
            known.update(
                {
                    (item.key, item.etag): old_vectors[row]
                    for row, item in enumerate(previous.items)
                    if row < len(old_vectors)
                }
            )
    saved = None if full else checkpoint.load(client, bucket=bucket, index_prefix=prefix)
    if saved is not None and saved.model == settings.model:
        known.update(zip(zip(saved.keys, saved.etags, strict=True), saved.vectors, strict=True))
    plan = Plan(objects=objects, known=known, previous=previous)
    plan.todo = [obj for obj in objects if (obj.key, obj.etag) not in known]
    return plan


def compare(plan: Plan) -> BuildReport:
    old = {item.key: item.etag for item in plan.previous.items} if plan.previous else {}
    current = {obj.key for obj in plan.objects}
    todo = {obj.key for obj in plan.todo}
    return BuildReport(
        complete=True,
        added=sum(1 for obj in plan.objects if obj.key not in old),
        updated=sum(1 for obj in plan.objects if obj.key in old and old[obj.key] != obj.etag),
        reused=len(current - todo),
        removed=len(old.keys() - current),
    )


def unchanged(plan: Plan, report: BuildReport, settings: Settings) -> bool:
    """Nothing to embed and the last build already holds exactly these objects."""
    if plan.previous is None or plan.todo or report.removed or report.added or report.updated:
        return False
    previous_type = canonical_index_type(plan.previous.index_type)
    same_type = settings.index_type in ("auto", previous_type)
    # A build from before key order or near-duplicates (or whose pass failed, or was made at
    # another score) is published again, so prefixes become single ranges and groups appear.
    groups = plan.previous.duplicates
    current_layout = (
        plan.previous.sorted_by == "key"
        and groups is not None
        and groups.min_score == settings.duplicate_score
    )
    return (
        same_type
        and current_layout
        and plan.previous.model == settings.model
        and not plan.previous.skipped
    )
