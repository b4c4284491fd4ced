"""Stage 3: the reused vectors and the shards' results → one FAISS index → publish → clean up.

Items are ordered by (folder, key), as the listing is, so every engine publishes the same index
for the same bucket. A shard without a result (Step Functions tolerates a few failed shards)
leaves its images out of this build, listed as skipped; the next build embeds them.
"""

from __future__ import annotations

import logging

import numpy as np

from image_search.build import work
from image_search.build.report import BuildReport
from image_search.config import Settings
from image_search.errors import IndexMismatchError, NoImagesError
from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import artefacts, layout, s3
from image_search.storage.manifest import Item, Metadata, Skipped, folder_ranges

LOG = logging.getLogger(__name__)

# Rows copied at once from the previous build's vectors: bounds the temporary copy.
COPY_ROWS = 65_536


def merge_build(settings: Settings, plan: work.BuildPlan, *, client: s3.S3Client) -> BuildReport:
    """Publish the build ``plan`` describes and delete its work files."""
    where = {"bucket": settings.bucket, "index_prefix": settings.index_prefix}
    report = BuildReport(
        added=plan.added, updated=plan.updated, removed=plan.removed, reused=len(plan.reused)
    )
    results = work.in_parallel(
        lambda ref: work.load_result(client, shard_id=ref.shard_id, **where), plan.shards
    )
    finished: list[work.ShardResult] = []
    for ref, result in zip(plan.shards, results, strict=True):
        if result is not None and result.model == plan.model:
            finished.append(result)
            report.skipped.extend(result.skipped)
            if result.plan_id == plan.plan_id:
                report.embedded += len(result.rows)
            else:
                report.resumed += len(result.rows)
        else:
            report.skipped.extend(_unfinished(client, settings, ref.shard_id))

    items = [*_items(plan.reused), *(item for r in finished for item in _items(r.rows))]
    if not items:
        raise NoImagesError(
            f"none of the {len(plan.reused) + _todo(plan)} images could be embedded"
        )
    order = sorted(range(len(items)), key=lambda i: (items[i].folder, items[i].key))
    position = np.empty(len(items), dtype=np.int64)
    position[order] = np.arange(len(items))
    matrix = _gather(client, settings, plan, finished, position)
    items = [items[i] for i in order]

    index_type = faiss_index.choose_type(settings.index_type, len(items))
    index = faiss_index.build(matrix, index_type=index_type)
    metadata = Metadata(
        build_id=layout.new_build_id(),
        model=settings.model,
        dim=matrix.shape[1],
        index_type=index_type,
        count=len(items),
        bucket=settings.bucket,
        folders=folder_ranges(items),
        items=items,
        skipped=report.skipped,
    )
    artefacts.publish(
        client,
        metadata=metadata,
        index=index,
        vectors=matrix,
        keep_builds=settings.keep_builds,
        **where,
    )
    deleted = work.clean(client, plan=plan, **where)
    LOG.info("build %s published; %d work file(s) deleted", metadata.build_id, deleted)
    report.build_id = metadata.build_id
    report.count = len(items)
    report.index_type = index_type
    report.published = True
    return report


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
    previous, vectors = artefacts.load_vectors(
        client, bucket=settings.bucket, pointer=plan.previous
    )
    if vectors.shape[0] != previous.count:
        raise IndexMismatchError(
            f"build {previous.build_id}: its embeddings no longer match its metadata; build again"
        )
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
