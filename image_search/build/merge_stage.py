"""Stage 3: the reused vectors and the shards' results → one FAISS index → publish → clean up.

Items are ordered by key, so every key prefix (a folder at any depth) is one contiguous id
range, and every engine publishes the same index for the same bucket. A shard without a result
(Step Functions tolerates a few failed shards) leaves its images out of this build, listed as
skipped; the next build embeds them.

Every result is checked against its shard's input first (build/shard_check.py): one that does not
match is treated as unfinished, the same way, and deleted so that no later run resumes it. The
merge never embeds: on Step Functions it is a Lambda without the model, and a refused result
means someone wrote the work folder who should not have, which one build's missing images report.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from image_search.artefacts.loader import load_metadata, load_vectors
from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.artefacts.manifest import Listing, Metadata, Pointer, Skipped, folder_ranges
from image_search.artefacts.photos import PhotoColumns
from image_search.artefacts.publish import publish
from image_search.artefacts.segments import Segment, load_segment
from image_search.build import photos, work
from image_search.build.duplicates import publish_groups
from image_search.build.options import BuildOptions
from image_search.build.plan import item_of, same_as_previous, tally
from image_search.build.report import BuildReport
from image_search.build.shard_check import BadResultError, check_input, check_result
from image_search.build.shards import Shard
from image_search.errors import NoImagesError, PublishConflictError
from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import lease, s3

LOG = logging.getLogger(__name__)

# Rows copied at once from the previous build's vectors: bounds the temporary copy.
COPY_ROWS = 65_536


def merge_build(
    where: IndexLocation,
    options: BuildOptions,
    plan: work.BuildPlan,
    *,
    held: lease.Lease | None = None,
) -> BuildReport:
    """Publish the build ``plan`` describes and delete its work files.

    Nothing is published when the images indexed are exactly the last build's, when ``held``
    (the build lease) was taken over by another build, or when ``current.json`` changed since
    the plan read it (``PublishConflictError``).
    """
    previous = _previous_metadata(where, plan)
    shards = _collect(where, plan, dim=previous.dim if previous and len(plan.reused) else None)
    objects = [*plan.reused.objects(), *(obj for r in shards.finished for obj in r.rows.objects())]
    found = [item_of(obj) for obj in objects]
    if not found:
        raise NoImagesError(f"none of the {len(plan.reused) + _todo(plan)} images could be decoded")
    order = sorted(range(len(found)), key=lambda i: found[i].key)
    items = [found[i] for i in order]
    done = shards.embedded + shards.resumed
    report = tally(previous, items, skipped=shards.skipped, embedded=done)
    report.embedded, report.resumed = shards.embedded, shards.resumed
    report.index_type = faiss_index.choose_type(options.index_type, len(items))
    folds = plan.previous is not None and bool(plan.previous.segments)
    if (
        not plan.full
        and not folds
        and same_as_previous(
            previous,
            items,
            photos=plan.previous is not None and plan.previous.photos_key is not None,
            model=plan.model,
            bucket=where.bucket,
            index_type=report.index_type,
            duplicate_score=options.duplicate_score,
        )
    ):
        assert previous is not None
        report.build_id = previous.build_id
        work.clean(where, plan=plan)
        return report

    segments = _folded(where, plan, previous)
    photo_columns = _photos(
        where, options, plan, shards, previous, objects=objects, segments=segments
    )
    position = np.empty(len(found), dtype=np.int64)
    position[order] = np.arange(len(found))
    matrix = _gather(where, plan, shards.vectors, position, folded=[v for _, v in segments])
    index = faiss_index.build(matrix, index_type=report.index_type)
    build_id = new_build_id()
    if held is not None:
        held.ensure_held()
    groups = publish_groups(
        where,
        min_score=options.duplicate_score,
        build_id=build_id,
        items=items,
        vectors=matrix,
        index=index,
    )
    metadata = Metadata(
        build_id=build_id,
        model=plan.model,
        dim=matrix.shape[1],
        index_type=report.index_type,
        count=len(items),
        bucket=where.bucket,
        folders=folder_ranges(items),
        items=items,
        skipped=report.skipped,
        sorted_by="key",
        duplicates=groups,
    )
    if held is not None:
        held.ensure_held()
    publish(
        where,
        metadata=metadata,
        photos=photo_columns.take(order),
        index=index,
        vectors=matrix,
        keep_builds=options.keep_builds,
        prune_grace_seconds=options.prune_grace_seconds,
        pointer_etag=plan.pointer_etag,
        base=plan.previous,
    )
    deleted = work.clean(where, plan=plan)
    LOG.info("build %s published; %d work file(s) deleted", metadata.build_id, deleted)
    report.build_id = metadata.build_id
    report.duplicate_groups = groups.groups if groups else None
    report.published = True
    return report


@dataclass
class _Shards:
    finished: list[work.ShardResult] = field(default_factory=list)
    vectors: list[Vectors] = field(default_factory=list)  # each finished result's, checked
    skipped: list[Skipped] = field(default_factory=list)
    embedded: int = 0  # vectors the shards of this plan's run embedded
    resumed: int = 0  # vectors from shards an earlier, interrupted run finished


@dataclass
class _Found:
    """One shard as the merge found it: a checked result, none yet, or one refused."""

    ref: work.ShardRef
    shard: Shard | None  # None: its input is not the plan's, so its objects are unknown
    result: work.ShardResult | None = None
    vectors: Vectors | None = None
    problem: str | None = None  # why the result is refused


def _collect(where: IndexLocation, plan: work.BuildPlan, *, dim: int | None) -> _Shards:
    """Every shard's checked result, in plan order; a shard without a usable one has its images
    skipped. ``dim`` is the reused vectors' width; without reused vectors, the width most rows
    have (every honest shard's) is the build's."""
    found = work.in_parallel(lambda ref: _find(where, plan, ref), plan.shards)
    widths = Counter[int]()
    for one in found:
        if one.vectors is not None and one.result is not None and len(one.result.rows):
            widths[one.vectors.shape[1]] += len(one.result.rows)
    width = dim if dim is not None else max(widths, key=lambda w: (widths[w], -w), default=None)
    shards = _Shards(skipped=list(plan.still_broken))
    for one in found:
        if one.vectors is not None and one.result is not None and len(one.result.rows):
            if one.vectors.shape[1] != width:
                one.problem = f"its vectors are {one.vectors.shape[1]} wide, the build's {width}"
        if one.result is None or one.vectors is None or one.problem is not None:
            shards.skipped.extend(_unfinished(where, one))
            continue
        shards.finished.append(one.result)
        shards.vectors.append(one.vectors)
        shards.skipped.extend(one.result.skipped)
        if one.result.plan_id == plan.plan_id:
            shards.embedded += len(one.result.rows)
        else:
            shards.resumed += len(one.result.rows)
    return shards


def _find(where: IndexLocation, plan: work.BuildPlan, ref: work.ShardRef) -> _Found:
    try:
        shard = work.load_shard(where, shard_id=ref.shard_id)
        check_input(shard, ref, model=plan.model, salt=plan.shard_salt)
    except (BadResultError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        return _Found(ref, shard=None, problem=_why(exc))
    except Exception as exc:
        if not s3.is_missing(exc):
            raise
        return _Found(ref, shard=None, problem="its input is missing")
    try:
        result = work.load_result(where, shard_id=ref.shard_id)
        if result is None:
            return _Found(ref, shard)
        vectors = check_result(where, shard, result, model=plan.model, dim=None)
    except (BadResultError, ValueError) as exc:
        return _Found(ref, shard, problem=_why(exc))
    return _Found(ref, shard, result=result, vectors=vectors)


def _why(exc: Exception) -> str:
    return (
        str(exc) if isinstance(exc, BadResultError) else f"it is unreadable ({type(exc).__name__})"
    )


def _previous_metadata(where: IndexLocation, plan: work.BuildPlan) -> Listing | None:
    if plan.previous is None:
        return None
    with _still_there(plan.previous):
        # Without the photo fields: they come from photos.npy (build/photos.py).
        return load_metadata(where, pointer=plan.previous, document=Listing)


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
    where: IndexLocation,
    plan: work.BuildPlan,
    parts: list[Vectors],
    position: np.ndarray,
    *,
    folded: list[Vectors],
) -> Vectors:
    """One matrix, row ``position[i]`` holding item i's vector (reused items first, then each
    shard's), filled in place so no second full-size copy is ever made. ``folded``: the adds of
    the segments the plan folds in, in its order."""
    parts = [part for part in parts if len(part)]
    previous = _previous_vectors(where, plan)
    adds = np.concatenate(folded) if folded else np.zeros((0, previous.shape[1]), np.float32)
    dim = previous.shape[1] if len(plan.reused) else parts[0].shape[1]
    matrix = np.empty((len(position), dim), dtype=np.float32)
    start, count = 0, len(previous)
    for begin in range(0, len(plan.reused_rows), COPY_ROWS):
        rows = np.asarray(plan.reused_rows[begin : begin + COPY_ROWS], dtype=np.int64)
        at = position[start : start + len(rows)]
        built = rows < count  # the build's rows; the others are its segments' adds
        matrix[at[built]] = previous[rows[built]]
        matrix[at[~built]] = adds[rows[~built] - count]
        start += len(rows)
    del previous
    for part in parts:
        matrix[position[start : start + len(part)]] = part
        start += len(part)
    return matrix


def _previous_vectors(where: IndexLocation, plan: work.BuildPlan) -> Vectors:
    """The previous build's vectors."""
    if not len(plan.reused):
        return np.zeros((0, 0), dtype=np.float32)
    assert plan.previous is not None, "a plan that reuses rows names their build"
    # Raises IndexMismatchError if the build was damaged since the plan checked it; the next
    # plan then finds it damaged and embeds everything.
    with _still_there(plan.previous):
        return load_vectors(where, pointer=plan.previous, document=Listing)[1]


def _folded(
    where: IndexLocation, plan: work.BuildPlan, previous: Listing | None
) -> list[tuple[Segment, Vectors]]:
    """The segments the plan folds in, in its order, with their adds' vectors."""
    if not len(plan.reused) or not plan.folded:
        return []
    assert plan.previous is not None and previous is not None, "folded segments name a build"
    refs = {ref.segment_id: ref for ref in plan.previous.segments or []}
    with _still_there(plan.previous):
        # Checked again as they are read (artefacts/segments.py): the plan's check was earlier.
        return [
            load_segment(where, refs[sid], model=previous.model, dim=previous.dim)
            for sid in plan.folded
        ]


def _unfinished(where: IndexLocation, found: _Found) -> list[Skipped]:
    shard_id = found.ref.shard_id
    if found.problem is None:
        LOG.warning(
            "shard %s did not finish: its %d image(s) wait for the next build",
            shard_id,
            found.ref.count,
        )
        reason = f"shard {shard_id} did not finish; the next build embeds it"
    else:
        LOG.error(
            "shard %s: result refused (%s): its %d image(s) wait for the next build",
            shard_id,
            found.problem,
            found.ref.count,
        )
        reason = (
            f"shard {shard_id}'s result was refused ({found.problem}); the next build embeds it"
        )
        # No later run may resume it: the shard stage would find it and not embed again.
        s3.delete_keys(where.client, bucket=where.bucket, keys=[where.shard_result_key(shard_id)])
    objects = found.shard.objects if found.shard is not None else []
    return [Skipped(key=obj.key, reason=reason) for obj in objects]


def _photos(
    where: IndexLocation,
    options: BuildOptions,
    plan: work.BuildPlan,
    shards: _Shards,
    previous: Listing | None,
    *,
    objects: list[s3.S3Object],
    segments: list[tuple[Segment, Vectors]],
) -> PhotoColumns:
    """Each object's photo fields, in ``objects`` order: reused with its vector (from the last
    build, or from the segment that added it), from the shard that embedded it, or else read
    from the object's head now (build/photos.py)."""
    kept = photos.previous_columns(where, pointer=plan.previous) if len(plan.reused) else None
    return photos.gather(
        where.client,
        bucket=where.bucket,
        objects=objects,
        reused=(previous, kept, plan.reused_rows),
        results=shards.finished,
        workers=options.download_workers,
        folded=[item.photo for segment, _ in segments for item in segment.items],
    )


def _todo(plan: work.BuildPlan) -> int:
    return sum(ref.count for ref in plan.shards)
