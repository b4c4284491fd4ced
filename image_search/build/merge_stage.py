"""Stage 3: the reused vectors and the shards' results → one FAISS index → publish → clean up.

Items are ordered by (folder, key), as the listing is, so every engine publishes the same index
for the same bucket. A shard without a result (Step Functions tolerates a few failed shards)
leaves its images out of this build, listed as skipped; the next build embeds them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from image_search.build import work
from image_search.build.plan import same_as_previous, tally
from image_search.build.report import BuildReport
from image_search.config import Settings
from image_search.errors import NoImagesError, PublishConflictError
from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import artefacts, layout, lease, s3
from image_search.storage.manifest import Item, Metadata, Pointer, Skipped, folder_ranges

LOG = logging.getLogger(__name__)

# Rows copied at once from the previous build's vectors: bounds the temporary copy.
COPY_ROWS = 65_536


def merge_build(
    settings: Settings,
    plan: work.BuildPlan,
    *,
    client: s3.S3Client,
    held: lease.Lease | None = None,
) -> BuildReport:
    """Publish the build ``plan`` describes and delete its work files.

    Nothing is published when the images indexed are exactly the last build's, when ``held``
    (the build lease) was taken over by another build, or when ``current.json`` changed since
    the plan read it (``PublishConflictError``).
    """
    where = {"bucket": settings.bucket, "index_prefix": settings.index_prefix}
    results = work.in_parallel(
        lambda ref: work.load_result(client, shard_id=ref.shard_id, **where), plan.shards
    )
    finished: list[work.ShardResult] = []
    skipped = list(plan.still_broken)
    embedded = resumed = 0
    for ref, result in zip(plan.shards, results, strict=True):
        if result is None or result.model != plan.model:
            skipped.extend(_unfinished(client, settings, ref.shard_id))
            continue
        finished.append(result)
        skipped.extend(result.skipped)
        if result.plan_id == plan.plan_id:
            embedded += len(result.rows)
        else:
            resumed += len(result.rows)

    items = [*_items(plan.reused), *(item for r in finished for item in _items(r.rows))]
    previous = _previous_metadata(client, settings, plan)
    report = tally(
        previous, sorted(items, key=_order), skipped=skipped, embedded=embedded + resumed
    )
    report.embedded, report.resumed = embedded, resumed
    if not items:
        raise NoImagesError(f"none of the {len(plan.reused) + _todo(plan)} images could be decoded")
    report.index_type = faiss_index.choose_type(settings.index_type, len(items))
    if not plan.full and same_as_previous(
        previous, sorted(items, key=_order), index_type=report.index_type, model=settings.model
    ):
        assert previous is not None
        report.build_id = previous.build_id
        work.clean(client, plan=plan, **where)
        return report

    order = sorted(range(len(items)), key=lambda i: _order(items[i]))
    position = np.empty(len(items), dtype=np.int64)
    position[order] = np.arange(len(items))
    matrix = _gather(client, settings, plan, finished, position)
    items = [items[i] for i in order]
    index = faiss_index.build(matrix, index_type=report.index_type)
    metadata = Metadata(
        build_id=layout.new_build_id(),
        model=settings.model,
        dim=matrix.shape[1],
        index_type=report.index_type,
        count=len(items),
        bucket=settings.bucket,
        folders=folder_ranges(items),
        items=items,
        skipped=report.skipped,
    )
    if held is not None:
        held.ensure_held()
    artefacts.publish(
        client,
        metadata=metadata,
        index=index,
        vectors=matrix,
        keep_builds=settings.keep_builds,
        pointer_etag=plan.pointer_etag,
        **where,
    )
    deleted = work.clean(client, plan=plan, **where)
    LOG.info("build %s published; %d work file(s) deleted", metadata.build_id, deleted)
    report.build_id = metadata.build_id
    report.published = True
    return report


def _order(item: Item) -> tuple[str, str]:
    """The listing's order, which is the index's: by folder, then key."""
    return (item.folder, item.key)


def _previous_metadata(
    client: s3.S3Client, settings: Settings, plan: work.BuildPlan
) -> Metadata | None:
    if plan.previous is None:
        return None
    with _still_there(plan.previous):
        data = s3.get_bytes(client, bucket=settings.bucket, key=plan.previous.metadata_key)
    return Metadata.model_validate_json(data)


@contextmanager
def _still_there(previous: Pointer) -> Iterator[None]:
    """The build the plan started from is gone only if another build published since (and
    pruned it): this one must not publish, as the conditional pointer write would refuse."""
    try:
        yield
    except Exception as exc:
        if not s3.is_missing(exc):
            raise
        raise PublishConflictError(
            f"current.json changed while this build ran (build {previous.build_id}, which it "
            "started from, is gone): run the build again"
        ) from exc


def _gather(
    client: s3.S3Client,
    settings: Settings,
    plan: work.BuildPlan,
    finished: list[work.ShardResult],
    position: np.ndarray,
) -> Vectors:
    """One matrix, row ``position[i]`` holding item i's vector (reused items first, then each
    shard's), filled in place so no second full-size copy is ever made."""
    parts = work.in_parallel(
        lambda r: work.load_vectors(client, bucket=settings.bucket, key=r.vectors_key),
        [r for r in finished if len(r.rows)],
    )
    previous = _previous_vectors(client, settings, plan)
    dim = previous.shape[1] if len(plan.reused) else parts[0].shape[1]
    matrix = np.empty((len(position), dim), dtype=np.float32)
    start = 0
    for begin in range(0, len(plan.reused_rows), COPY_ROWS):
        rows = plan.reused_rows[begin : begin + COPY_ROWS]
        matrix[position[start : start + len(rows)]] = previous[rows]
        start += len(rows)
    del previous
    for part in parts:
        matrix[position[start : start + len(part)]] = part
        start += len(part)
    return matrix


def _previous_vectors(client: s3.S3Client, settings: Settings, plan: work.BuildPlan) -> Vectors:
    if not len(plan.reused):
        return np.zeros((0, 0), dtype=np.float32)
    assert plan.previous is not None, "a plan that reuses rows names their build"
    # Raises IndexMismatchError if the build was damaged since the plan checked it; the next
    # plan then finds it damaged and embeds everything.
    with _still_there(plan.previous):
        _, vectors = artefacts.load_vectors(client, bucket=settings.bucket, pointer=plan.previous)
    return vectors


def _unfinished(client: s3.S3Client, settings: Settings, shard_id: str) -> list[Skipped]:
    shard = work.load_shard(
        client, bucket=settings.bucket, index_prefix=settings.index_prefix, shard_id=shard_id
    )
    LOG.warning(
        "shard %s did not finish: its %d image(s) wait for the next build",
        shard_id,
        len(shard.objects),
    )
    reason = f"shard {shard_id} did not finish; the next build embeds it"
    return [Skipped(key=obj.key, reason=reason) for obj in shard.objects]


def _items(rows: work.Rows) -> list[Item]:
    return [
        Item(key=key, folder=s3.folder_of(key), etag=etag, size=size)
        for key, etag, size in zip(rows.keys, rows.etags, rows.sizes, strict=True)
    ]


def _todo(plan: work.BuildPlan) -> int:
    return sum(ref.count for ref in plan.shards)
