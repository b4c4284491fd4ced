"""What a build has to do: list the bucket, diff it against the last build (key + ETag) and any
checkpoint, and count exactly what changed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from image_search.build.previous import read_previous
from image_search.build.report import BuildReport
from image_search.config import Settings, canonical_index_type
from image_search.errors import NoImagesError
from image_search.model.vectors import Vectors
from image_search.storage import checkpoint, s3
from image_search.storage.manifest import Item, Metadata, Skipped

LOG = logging.getLogger(__name__)


@dataclass
class Plan:
    model: str  # the embedder's identity (its source model, whatever the runtime)
    objects: list[s3.S3Object]
    known: dict[tuple[str, str], Vectors]  # (key, etag) → vector from the last build/checkpoint
    previous: Metadata | None
    pointer_etag: str | None = None  # current.json as this build found it, for the publish
    # Objects the last build found undecodable and that have not changed since: not fetched again.
    still_broken: list[Skipped] = field(default_factory=list)
    todo: list[s3.S3Object] = field(default_factory=list)

    @property
    def broken_keys(self) -> set[str]:
        return {s.key for s in self.still_broken}


def make_plan(settings: Settings, *, client: s3.S3Client, full: bool, model: str) -> Plan:
    """``model`` is the embedder's identity: vectors of another model are never reused."""
    bucket, prefix = settings.bucket, settings.index_prefix
    objects = s3.list_images(client, bucket=bucket, folders=settings.folders, exclude_prefix=prefix)
    if not objects:
        where = ", ".join(settings.folders) or "any folder"
        raise NoImagesError(f"no images found in s3://{bucket}/ ({where})")
    known: dict[tuple[str, str], Vectors] = {}
    last = read_previous(client, bucket=bucket, index_prefix=prefix)
    previous = last.metadata
    if previous is not None and previous.model != model:
        LOG.info("model changed (%s → %s): embedding everything", previous.model, model)
    elif previous is not None and not full:
        rows = zip(previous.items, last.vectors, strict=False)  # no vectors: nothing to reuse
        known.update({(item.key, item.etag): vector for item, vector in rows})
    saved = None if full else checkpoint.load(client, bucket=bucket, index_prefix=prefix)
    if saved is not None and saved.model == model:
        known.update(zip(zip(saved.keys, saved.etags, strict=True), saved.vectors, strict=True))
    plan = Plan(
        model=model, objects=objects, known=known, previous=previous, pointer_etag=last.pointer_etag
    )
    if previous is not None and not full:
        listed = {(obj.key, obj.etag) for obj in objects}
        plan.still_broken = [
            s for s in previous.skipped if s.cause == "image" and (s.key, s.etag) in listed
        ]
    broken = plan.broken_keys
    plan.todo = [o for o in objects if (o.key, o.etag) not in known and o.key not in broken]
    return plan


def tally(
    plan: Plan, items: list[Item], *, skipped: list[Skipped], embedded: int, complete: bool
) -> BuildReport:
    """The counts for a build holding ``items``: added, updated and removed against the last
    build; every item either reused or embedded; every listed object indexed or skipped."""
    old = {item.key: item.etag for item in plan.previous.items} if plan.previous else {}
    new = {item.key for item in items}
    return BuildReport(
        complete=complete,
        count=len(items),
        added=sum(1 for item in items if item.key not in old),
        updated=sum(1 for item in items if item.key in old and old[item.key] != item.etag),
        removed=len(old.keys() - new),
        reused=len(items) - embedded,
        embedded=embedded,
        skipped=sorted(skipped, key=lambda s: s.key),
    )


def same_as_previous(plan: Plan, items: list[Item], *, index_type: str, settings: Settings) -> bool:
    """The last build already holds exactly these items, built the same way.

    A build from before key order or near-duplicates (or whose duplicate pass failed, or ran at
    another score) is published again, so prefixes become single ranges and groups appear.
    """
    last = plan.previous
    if last is None or last.model != plan.model:
        return False
    same_items = [(i.key, i.etag) for i in last.items] == [(i.key, i.etag) for i in items]
    groups = last.duplicates
    current_layout = (
        last.sorted_by == "key"
        and groups is not None
        and groups.min_score == settings.duplicate_score
    )
    return same_items and current_layout and canonical_index_type(last.index_type) == index_type
