"""The index build: plan → fetch/decode (threads) → embed (batches) → FAISS → publish.

Incremental by default: objects whose key and ETag are unchanged reuse their stored vector, so a
rebuild costs one listing plus the images that changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm import tqdm

from image_search.build.duplicates import publish_groups
from image_search.build.fetch import decoded_batches
from image_search.build.plan import Plan, make_plan, same_as_previous, tally
from image_search.build.report import BuildReport
from image_search.config import Settings
from image_search.errors import NoImagesError
from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import artefacts, checkpoint, layout, lease, s3
from image_search.storage.manifest import Item, Metadata, Skipped, folder_ranges

LOG = logging.getLogger(__name__)

# Stop this many seconds before a deadline (Lambda's 15 minutes): enough to save a checkpoint.
DEADLINE_MARGIN_SECONDS = 45.0


class ImageEmbedder(Protocol):
    source: str
    batch_size: int

    @property
    def identity(self) -> str: ...

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors: ...


def run_build(
    settings: Settings,
    *,
    client: s3.S3Client,
    embedder: ImageEmbedder,
    full: bool = False,
    dry_run: bool = False,
    time_left: Callable[[], float] | None = None,
) -> BuildReport:
    """Build and publish an index of ``settings.bucket``.

    ``full`` re-embeds every image; ``dry_run`` only counts what would change; ``time_left``
    (seconds remaining) lets a Lambda run stop cleanly before its deadline. A build holds the
    build lease from start to end (``BuildRunningError`` while another build holds it).
    """
    started = time.monotonic()
    if dry_run:
        plan = make_plan(settings, client=client, full=full, model=embedder.identity)
        report = _forecast(plan)
    else:
        where = {"bucket": settings.bucket, "index_prefix": settings.index_prefix}
        with lease.held(client, seconds=settings.build_lease_seconds, **where) as held:
            report = _build(
                settings,
                client=client,
                embedder=embedder,
                full=full,
                time_left=time_left,
                held=held,
            )
    report.seconds = time.monotonic() - started
    LOG.info(report.line())
    return report


def _forecast(plan: Plan) -> BuildReport:
    """A dry run's counts, supposing every new object decodes."""
    items = [_item(obj) for obj in plan.objects if obj.key not in plan.broken_keys]
    report = tally(plan, items, skipped=plan.still_broken, embedded=0, complete=True)
    report.reused = len(items) - len(plan.todo)
    report.build_id = plan.previous.build_id if plan.previous else None
    return report


def _build(
    settings: Settings,
    *,
    client: s3.S3Client,
    embedder: ImageEmbedder,
    full: bool,
    time_left: Callable[[], float] | None,
    held: lease.Lease,
) -> BuildReport:
    # The model's identity, not IMAGE_SEARCH_MODEL: an export of a model and the model under
    # torch give the same vectors, so either runtime continues the other's builds.
    plan = make_plan(settings, client=client, full=full, model=embedder.identity)
    vectors, failed, complete, embedded = _embed_missing(
        settings, plan, client=client, embedder=embedder, time_left=time_left, held=held
    )
    # Sorted by key, so every key prefix (a folder at any depth) is one contiguous id range.
    items = sorted((_item(obj) for obj in plan.objects if obj.key in vectors), key=_by_key)
    skipped = plan.still_broken + failed
    report = tally(plan, items, skipped=skipped, embedded=embedded, complete=complete)
    if not complete:
        return report
    if not items:
        raise NoImagesError(f"none of the {len(plan.objects)} images could be decoded")
    index_type = faiss_index.choose_type(settings.index_type, len(items))
    report.index_type = index_type
    where = {"bucket": settings.bucket, "index_prefix": settings.index_prefix}
    if not full and same_as_previous(plan, items, index_type=index_type, settings=settings):
        assert plan.previous is not None
        report.build_id = plan.previous.build_id
        checkpoint.delete(client, **where)
        return report
    held.ensure_held()
    matrix = np.stack([vectors[item.key] for item in items]).astype(np.float32)
    index = faiss_index.build(matrix, index_type=index_type)
    build_id = layout.new_build_id()
    groups = publish_groups(
        settings, client=client, build_id=build_id, items=items, vectors=matrix, index=index
    )
    held.ensure_held()
    metadata = Metadata(
        build_id=build_id,
        model=plan.model,
        dim=matrix.shape[1],
        index_type=index_type,
        count=len(items),
        bucket=settings.bucket,
        folders=folder_ranges(items),
        items=items,
        skipped=report.skipped,
        sorted_by="key",
        duplicates=groups,
    )
    artefacts.publish(
        client,
        metadata=metadata,
        index=index,
        vectors=matrix,
        keep_builds=settings.keep_builds,
        pointer_etag=plan.pointer_etag,
        **where,
    )
    checkpoint.delete(client, **where)
    report.build_id = metadata.build_id
    report.duplicate_groups = groups.groups if groups else None
    report.published = True
    return report


def _item(obj: s3.S3Object) -> Item:
    return Item(key=obj.key, folder=obj.folder, etag=obj.etag, size=obj.size)


def _by_key(item: Item) -> str:
    return item.key


def _embed_missing(
    settings: Settings,
    plan: Plan,
    *,
    client: s3.S3Client,
    embedder: ImageEmbedder,
    time_left: Callable[[], float] | None,
    held: lease.Lease,
) -> tuple[dict[str, Vectors], list[Skipped], bool, int]:
    """Vectors for every object (reused or new), the skipped objects, whether all were done, and
    how many were embedded by this run."""
    vectors = {
        obj.key: plan.known[(obj.key, obj.etag)]
        for obj in plan.objects
        if (obj.key, obj.etag) in plan.known
    }
    skipped: list[Skipped] = []
    new: dict[s3.S3Object, Vectors] = {}
    last_save = time.monotonic()
    progress = tqdm(total=len(plan.todo), unit="img", desc="embedding", disable=None)
    with progress:
        for batch, failures in decoded_batches(
            settings, plan.todo, client=client, batch_size=embedder.batch_size
        ):
            skipped.extend(failures)
            if batch:
                embedded = embedder.embed_images([image for _, image in batch])
                for (obj, _), row in zip(batch, embedded, strict=True):
                    new[obj] = row
                    vectors[obj.key] = row
            progress.update(len(batch) + len(failures))
            out_of_time = time_left is not None and time_left() < DEADLINE_MARGIN_SECONDS
            if out_of_time or time.monotonic() - last_save > settings.checkpoint_seconds:
                held.ensure_held()
                _save_checkpoint(settings, plan.model, new, client=client)
                last_save = time.monotonic()
            if out_of_time:
                LOG.warning(
                    "stopping before the deadline: %d of %d embedded", len(new), len(plan.todo)
                )
                return vectors, skipped, False, len(new)
    return vectors, skipped, True, len(new)


def _save_checkpoint(
    settings: Settings, model: str, new: dict[s3.S3Object, Vectors], *, client: s3.S3Client
) -> None:
    if not new:
        return
    objs = list(new)
    where = {"bucket": settings.bucket, "index_prefix": settings.index_prefix}
    fresh = checkpoint.Checkpoint(
        model=model,
        keys=[obj.key for obj in objs],
        etags=[obj.etag for obj in objs],
        vectors=np.stack([new[obj] for obj in objs]),
    )
    # Keep what an earlier interrupted run had checkpointed too.
    merged = fresh.merged_with(checkpoint.load(client, **where))
    checkpoint.save(client, checkpoint=merged, **where)
    LOG.info("checkpoint saved: %d vectors", len(merged.keys))
