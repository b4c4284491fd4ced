"""The photo fields of a build's items, read once per image, kept as columns.

An embedded image's fields come from the shard that downloaded it (build/fetch.py); a reused
image keeps the record of the build it comes from (its photos.npy), with its vector, its size and
LastModified taken from the listing again; a compaction's segment adds keep the fields ingest read
from the bytes it embedded (``Item.photo`` in the segment). Images reused from a build made before
photo fields, rows of shard results written before them, and adds of segments made without them
have none: the merge reads them once from a ranged GET of the object's first ``HEAD_BYTES``, in
parallel, never a full download. A read that fails leaves that image's fields unknown (no
``photo`` in the metadata, so the next build that publishes tries again); it never stops the
build.

Nothing here makes an object per reused image: at millions of images those cost gigabytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from botocore.exceptions import ClientError

from image_search.artefacts import photos as columns
from image_search.artefacts.loader import load_photos
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import ItemPhoto, Listing, Pointer
from image_search.artefacts.photos import Photo, PhotoColumns
from image_search.build.documents import ShardResult
from image_search.errors import IndexMismatchError
from image_search.model.photo_fields import HEAD_BYTES, PhotoFields, read_fields
from image_search.storage import s3

LOG = logging.getLogger(__name__)


def gather(
    client: s3.S3Client,
    *,
    bucket: str,
    objects: Sequence[s3.S3Object],
    reused: tuple[Listing | None, PhotoColumns | None, Sequence[int]],
    results: Sequence[ShardResult],
    workers: int,
    folded: Sequence[ItemPhoto | None] = (),
) -> PhotoColumns:
    """Every object's fields, in ``objects`` order: the reused ones first (``reused``: the
    previous build's metadata, its columns and each object's row there, ``folded``: the fields of
    the adds of the segments it folds in, rows past the build's), then each result's."""
    previous, kept, rows = reused
    parts: list[PhotoColumns] = []
    places: list[np.ndarray] = []
    missing: list[int] = []
    usable = _usable(previous, kept, rows)
    if kept is not None and usable.any():
        at = np.flatnonzero(usable)
        parts.append(refreshed(kept.take(np.asarray(rows)[at]), [objects[i] for i in at.tolist()]))
        places.append(at)
    added, photos = _segment_adds(previous, rows, folded, objects)
    if len(added):
        parts.append(PhotoColumns.of(photos))
        places.append(added)
        usable[added] = True
    missing += np.flatnonzero(~usable).tolist()
    start = len(rows)
    for result in results:
        span = range(start, start + len(result.rows))
        if result.fields is None:
            missing += span
        else:
            read = [
                Photo.read(fields, size=objects[i].size, modified=objects[i].modified)
                for i, fields in zip(span, result.fields.fields(), strict=True)
            ]
            parts.append(PhotoColumns.of(read))
            places.append(np.arange(span.start, span.stop))
        start = span.stop
    if missing:
        parts.append(
            PhotoColumns.of(
                heads(client, bucket=bucket, objects=objects, at=missing, workers=workers)
            )
        )
        places.append(np.asarray(missing, dtype=np.int64))
    joined = PhotoColumns.concat(parts)
    order = np.argsort(np.concatenate(places) if places else np.zeros(0, dtype=np.int64))
    return joined.take(order)


def previous_columns(where: IndexLocation, *, pointer: Pointer | None) -> PhotoColumns | None:
    """The previous build's photos.npy, or None (none published, or damaged: its images are
    then read from their heads like those of a build without fields)."""
    if pointer is None:
        return None
    try:
        return load_photos(where, pointer=pointer)
    except (IndexMismatchError, ValueError, ClientError) as exc:
        LOG.warning("the last build's photo fields are unusable (%s); reading them again", exc)
        return None


def refreshed(part: PhotoColumns, objects: Sequence[s3.S3Object]) -> PhotoColumns:
    """``part``'s records with each object's size and LastModified as listed now (a copied
    bucket keeps ETags, not times), and the date of those without an EXIF date moved with it."""
    array = part.array
    array["size"] = np.array([obj.size for obj in objects], dtype=np.uint64)
    listed = np.array(
        [columns.NO_TIME if o.modified is None else columns.seconds(o.modified) for o in objects],
        dtype=np.int64,
    )
    now = listed != columns.NO_TIME
    array["modified"][now] = listed[now]
    undated = array["source"] != columns.FROM_EXIF
    dated = undated & (array["modified"] != columns.NO_TIME)
    array["taken"][undated] = columns.NO_TIME
    array["source"][undated] = columns.NO_DATE
    array["taken"][dated] = array["modified"][dated]
    array["source"][dated] = columns.FROM_MODIFIED
    return part


def heads(
    client: s3.S3Client,
    *,
    bucket: str,
    objects: Sequence[s3.S3Object],
    at: Sequence[int],
    workers: int,
) -> list[Photo | None]:
    """The photos of ``objects[i]`` for each ``i`` in ``at``, read from their heads in
    parallel; None where a read fails."""
    LOG.info("reading the photo fields of %d image(s) from their first bytes", len(at))
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="head") as pool:
        found = list(pool.map(lambda i: head_fields(client, bucket, objects[i]), at))
    failed = sum(1 for fields in found if fields is None)
    if failed:
        LOG.warning(
            "the photo fields of %d image(s) could not be read; the next build tries again", failed
        )
    return [
        None
        if fields is None
        else Photo.read(fields, size=objects[i].size, modified=objects[i].modified)
        for i, fields in zip(at, found, strict=True)
    ]


def head_fields(client: s3.S3Client, bucket: str, obj: s3.S3Object) -> PhotoFields | None:
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


def _segment_adds(
    previous: Listing | None,
    rows: Sequence[int],
    folded: Sequence[ItemPhoto | None],
    objects: Sequence[s3.S3Object],
) -> tuple[npt.NDArray[np.int64], list[Photo]]:
    """The reused rows that are segment adds with fields (their places in ``rows``), and their
    photos dated again by the listing, as a shard's are."""
    count = 0 if previous is None else len(previous.items)
    past: list[int] = []
    if len(folded):
        past = np.flatnonzero(np.asarray(rows, dtype=np.int64) >= count).tolist()
    places, photos = [], []
    for i in past:
        document = folded[rows[i] - count]
        if document is not None:
            obj = objects[i]
            fields = Photo.of_document(document, size=obj.size).fields()
            photos.append(Photo.read(fields, size=obj.size, modified=obj.modified))
            places.append(i)
    return np.asarray(places, dtype=np.int64), photos


def _usable(
    previous: Listing | None, kept: PhotoColumns | None, rows: Sequence[int]
) -> npt.NDArray[np.bool_]:
    """Which reused rows have a record to keep: rows of the build itself (past them: segment
    adds) whose fields its build read."""
    if previous is None or kept is None or len(kept) != len(previous.items):
        return np.zeros(len(rows), dtype=bool)
    at = np.asarray(rows, dtype=np.int64)
    inside = at < len(kept)
    usable = np.zeros(len(at), dtype=bool)
    usable[inside] = columns.known(kept.array[at[inside]])
    return usable
