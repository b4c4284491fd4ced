"""The photo fields of a build's items, read once per image.

An embedded image's fields come from the shard that downloaded it (build/fetch.py); a reused
image keeps the fields of the build it comes from, with its vector. Images reused from a build
made before photo fields (and rows of shard results written before them) have none: the merge
reads them once from a ranged GET of the object's first ``HEAD_BYTES``, in parallel, never a full
download. A read that fails leaves that image's fields unknown (``Item.photo`` absent, so the next
build that publishes tries again); it never stops the build.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from image_search.artefacts.manifest import ItemPhoto, Metadata
from image_search.artefacts.photos import Photo
from image_search.build.documents import ShardResult
from image_search.model.photo_fields import HEAD_BYTES, PhotoFields, read_fields
from image_search.storage import s3

LOG = logging.getLogger(__name__)

Found = PhotoFields | None  # None: not read yet, or the read failed


def reused(previous: Metadata | None, rows: Sequence[int]) -> list[Found]:
    """The fields the previous build published for its ``rows`` (None where it has none).

    Rows past its items are adds of the segments a compaction folds in (build/documents.py
    ``BuildPlan.folded``): None, so they are read from their heads like any image without them.
    """
    items = [] if previous is None else previous.items
    return [
        _fields(items[row].photo, size=items[row].size) if row < len(items) else None
        for row in rows
    ]


def of_result(result: ShardResult) -> list[Found]:
    """A shard result's fields, row for row (None for each row of a result without them)."""
    if result.fields is None:
        return [None] * len(result.rows)
    return list(result.fields.fields())


def fill(
    client: s3.S3Client,
    *,
    bucket: str,
    objects: Sequence[s3.S3Object],
    found: list[Found],
    workers: int,
) -> list[Found]:
    """``found`` with each missing entry read from its object's head; None where that fails."""
    missing = [at for at, fields in enumerate(found) if fields is None]
    if not missing:
        return found
    LOG.info("reading the photo fields of %d image(s) from their first bytes", len(missing))
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="head") as pool:
        heads = list(pool.map(lambda at: head_fields(client, bucket, objects[at]), missing))
    filled = list(found)
    for at, fields in zip(missing, heads, strict=True):
        filled[at] = fields
    failed = sum(1 for fields in heads if fields is None)
    if failed:
        LOG.warning(
            "the photo fields of %d image(s) could not be read; the next build tries again", failed
        )
    return filled


def head_fields(client: s3.S3Client, bucket: str, obj: s3.S3Object) -> Found:
    """The fields in the object's first ``HEAD_BYTES``, pinned to its listed ETag (an object
    replaced since must not give its fields to the old version's vector); None on any failure."""
    try:
        head, _ = s3.get_range(
            client, bucket=bucket, key=obj.key, start=0, end=HEAD_BYTES, etag=obj.etag
        )
    except Exception as exc:  # whatever the read met, the build goes on without these fields
        LOG.debug("no photo fields for %s: %s", obj.key, exc)
        return None
    return read_fields(head)


def documents(objects: Sequence[s3.S3Object], found: Sequence[Found]) -> list[ItemPhoto | None]:
    """``Item.photo`` of each object: its fields, dated by LastModified (as listed now) when they
    hold no date; None where the fields are unknown."""
    return [
        None
        if fields is None
        else Photo.read(fields, size=obj.size, modified=obj.modified).document()
        for obj, fields in zip(objects, found, strict=True)
    ]


def _fields(photo: ItemPhoto | None, *, size: int) -> Found:
    return None if photo is None else Photo.of_document(photo, size=size).fields()
