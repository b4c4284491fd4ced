"""What a build has to do: the listing diffed against the last build (key + ETag), and the
exact counts of what changed once the build knows which images it holds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from image_search.artefacts.manifest import Item, ItemPhoto, ListedItem, Listing, Pointer, Skipped
from image_search.build.previous import Previous
from image_search.build.report import BuildReport
from image_search.config import canonical_index_type
from image_search.storage import s3

LOG = logging.getLogger(__name__)


@dataclass
class Plan:
    objects: list[s3.S3Object]
    previous: Listing | None = None
    pointer: Pointer | None = None  # the build ``previous`` comes from
    pointer_etag: str | None = None  # current.json as this build found it, for the publish
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # reusable: row in previous
    # Objects the last build found undecodable and that have not changed since: not fetched again.
    still_broken: list[Skipped] = field(default_factory=list)
    todo: list[s3.S3Object] = field(default_factory=list)

    @property
    def reused(self) -> list[s3.S3Object]:
        return [obj for obj in self.objects if (obj.key, obj.etag) in self.rows]

    @property
    def items(self) -> list[Item]:
        """What the index would hold if every object to embed decoded, in its order (by key)."""
        broken = {s.key for s in self.still_broken}
        kept = [item_of(obj) for obj in self.objects if obj.key not in broken]
        return sorted(kept, key=lambda item: item.key)


def diff(objects: list[s3.S3Object], last: Previous, *, model: str, full: bool) -> Plan:
    """Which listed objects reuse a vector of the last build, which stay skipped, which to embed.

    ``model`` is the embedder's identity: vectors of another model are never reused.
    """
    previous = last.metadata
    plan = Plan(objects, previous=previous, pointer=last.pointer, pointer_etag=last.pointer_etag)
    if previous is not None and previous.model != model:
        LOG.info("model changed (%s → %s): embedding everything", previous.model, model)
    elif previous is not None and not full and len(last.vectors) == len(previous.items):
        # The build's rows and its segments' adds: a key and ETag met twice has one vector.
        plan.rows = {(item.key, item.etag): row for row, item in enumerate(last.pool)}
    if previous is not None and not full:
        listed = {(obj.key, obj.etag) for obj in objects}
        plan.still_broken = [s for s in last.undecodable if (s.key, s.etag) in listed]
    broken = {s.key for s in plan.still_broken}
    plan.todo = [o for o in objects if (o.key, o.etag) not in plan.rows and o.key not in broken]
    return plan


def item_of(obj: s3.S3Object, *, photo: ItemPhoto | None = None) -> Item:
    return Item(key=obj.key, folder=obj.folder, etag=obj.etag, size=obj.size, photo=photo)


def tally(
    previous: Listing | None,
    items: Sequence[ListedItem],
    *,
    skipped: list[Skipped],
    embedded: int,
    complete: bool = True,
) -> BuildReport:
    """The counts for a build holding ``items``: added, updated and removed against the last
    build; every item either reused or embedded; every listed object indexed or skipped."""
    old = {item.key: item.etag for item in previous.items} if previous else {}
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


def same_as_previous(
    previous: Listing | None,
    items: Sequence[ListedItem],
    *,
    photos: bool,
    model: str,
    bucket: str,
    index_type: str,
    duplicate_score: float,
) -> bool:
    """The last build already holds exactly these items, built the same way, for this bucket;
    ``photos``: it published their photo fields (its pointer names a photos.npy).

    A build from before key order, near-duplicates or photo fields (or whose duplicate pass
    failed, or ran at another score) is published again, so prefixes become single ranges and
    groups and photo fields appear. So is
    one made in another bucket (this one is a copy or a replica): its vectors are reused, since
    copies keep their ETags, and the new build records the bucket it describes.
    """
    if previous is None or previous.model != model or previous.bucket != bucket:
        return False
    same_items = [(i.key, i.etag) for i in previous.items] == [(i.key, i.etag) for i in items]
    groups = previous.duplicates
    # A build made before photo fields has none: its items are read once to publish them.
    current_layout = (
        previous.sorted_by == "key"
        and groups is not None
        and groups.min_score == duplicate_score
        and photos
    )
    same_index = canonical_index_type(previous.index_type) == index_type
    return same_items and current_layout and same_index
