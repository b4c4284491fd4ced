"""The index build: list → fetch/decode (threads) → embed (batches) → FAISS → publish.

Incremental by default: objects whose key and ETag are unchanged reuse their stored vector, so a
rebuild costs one listing plus the images that changed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm import tqdm

from image_search.config import Settings
from image_search.errors import ImageSearchError, NoImagesError, StorageUnavailableError
from image_search.index import faiss_index
from image_search.model import images
from image_search.model.vectors import Vectors
from image_search.storage import artefacts as store
from image_search.storage import s3
from image_search.storage.manifest import Item, Metadata, Skipped, folder_ranges

LOG = logging.getLogger(__name__)

# Stop this many seconds before a deadline (Lambda's 15 minutes): enough to save a checkpoint.
DEADLINE_MARGIN_SECONDS = 45.0


class ImageEmbedder(Protocol):
    source: str
    batch_size: int

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors: ...


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    bucket: str
    folders: list[str] = field(default_factory=list)
    index_prefix: str = "index/"
    model: str
    index_type: str = "auto"
    full: bool = False
    dry_run: bool = False
    workers: int = 8
    keep_builds: int = 3
    checkpoint_seconds: float = 60.0
    max_pixels: int = 40_000_000

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> BuildOptions:
        values: dict[str, object] = {
            "bucket": settings.bucket,
            "folders": settings.folders,
            "index_prefix": settings.index_prefix,
            "model": settings.model,
            "index_type": settings.index_type,
            "workers": settings.download_workers,
            "keep_builds": settings.keep_builds,
            "checkpoint_seconds": settings.checkpoint_seconds,
            "max_pixels": settings.max_image_pixels,
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]


@dataclass(kw_only=True)
class BuildReport:
    build_id: str | None = None
    complete: bool = True
    published: bool = False
    count: int = 0
    added: int = 0
    updated: int = 0
    reused: int = 0
    removed: int = 0
    embedded: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    index_type: str | None = None
    seconds: float = 0.0

    @property
    def state(self) -> str:
        return "published" if self.published else ("unchanged" if self.complete else "partial")

    def summary(self) -> str:
        return (
            f"{self.state} build={self.build_id} count={self.count} added={self.added} "
            f"updated={self.updated} reused={self.reused} removed={self.removed} "
            f"embedded={self.embedded} skipped={len(self.skipped)} seconds={self.seconds:.1f}"
        )


@dataclass
class _Plan:
    objects: list[s3.S3Object]
    known: dict[tuple[str, str], Vectors]  # (key, etag) → vector from the last build/checkpoint
    previous: Metadata | None
    todo: list[s3.S3Object] = field(default_factory=list)


def run_build(
    options: BuildOptions,
    *,
    client: s3.S3Client,
    embedder: ImageEmbedder,
    time_left: Callable[[], float] | None = None,
) -> BuildReport:
    """Build and publish an index.

    ``time_left`` (seconds remaining) lets a Lambda run stop cleanly before its deadline.
    """
    started = time.monotonic()
    plan = _plan(options, client=client)
    report = _compare(plan)
    if options.dry_run or _unchanged(plan, report, options):
        report.build_id = plan.previous.build_id if plan.previous else None
        report.count = len(plan.objects) - len(plan.todo)
        report.seconds = time.monotonic() - started
        return report

    vectors, skipped, complete, embedded = _embed_missing(
        options, plan, client=client, embedder=embedder, time_left=time_left
    )
    report.embedded = embedded
    report.skipped = skipped
    report.complete = complete
    if complete:
        _publish(options, plan, vectors, report, client=client)
    report.seconds = time.monotonic() - started
    LOG.info(report.summary())
    return report


def _plan(options: BuildOptions, *, client: s3.S3Client) -> _Plan:
    objects = s3.list_images(
        client, bucket=options.bucket, folders=options.folders, exclude_prefix=options.index_prefix
    )
    if not objects:
        where = ", ".join(options.folders) or "any folder"
        raise NoImagesError(f"no images found in s3://{options.bucket}/ ({where})")
    known: dict[tuple[str, str], Vectors] = {}
    previous: Metadata | None = None
    pointer = store.read_pointer(client, bucket=options.bucket, index_prefix=options.index_prefix)
    if pointer is not None:
        previous, old_vectors = store.load_vectors(client, bucket=options.bucket, pointer=pointer)
        if previous.model != options.model:
            LOG.info("model changed (%s → %s): embedding everything", previous.model, options.model)
        elif not options.full:
            known.update(
                {
                    (item.key, item.etag): old_vectors[row]
                    for row, item in enumerate(previous.items)
                    if row < len(old_vectors)
                }
            )
    checkpoint = (
        None
        if options.full
        else store.load_checkpoint(client, bucket=options.bucket, index_prefix=options.index_prefix)
    )
    if checkpoint is not None and checkpoint.model == options.model:
        known.update(
            zip(
                zip(checkpoint.keys, checkpoint.etags, strict=True), checkpoint.vectors, strict=True
            )
        )
    plan = _Plan(objects=objects, known=known, previous=previous)
    plan.todo = [obj for obj in objects if (obj.key, obj.etag) not in known]
    return plan


def _compare(plan: _Plan) -> BuildReport:
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


def _unchanged(plan: _Plan, report: BuildReport, options: BuildOptions) -> bool:
    """Nothing to embed and the last build already holds exactly these objects."""
    if plan.previous is None or plan.todo or report.removed or report.added or report.updated:
        return False
    same_type = options.index_type in ("auto", plan.previous.index_type)
    return same_type and plan.previous.model == options.model and not plan.previous.skipped


def _embed_missing(
    options: BuildOptions,
    plan: _Plan,
    *,
    client: s3.S3Client,
    embedder: ImageEmbedder,
    time_left: Callable[[], float] | None,
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
        for batch, failures in _decoded_batches(
            options, plan.todo, client=client, batch_size=embedder.batch_size
        ):
            skipped.extend(failures)
            if batch:
                embedded = embedder.embed_images([image for _, image in batch])
                for (obj, _), row in zip(batch, embedded, strict=True):
                    new[obj] = row
                    vectors[obj.key] = row
            progress.update(len(batch) + len(failures))
            out_of_time = time_left is not None and time_left() < DEADLINE_MARGIN_SECONDS
            if out_of_time or time.monotonic() - last_save > options.checkpoint_seconds:
                _save_checkpoint(options, plan, new, client=client)
                last_save = time.monotonic()
            if out_of_time:
                LOG.warning(
                    "stopping before the deadline: %d of %d embedded", len(new), len(plan.todo)
                )
                return vectors, skipped, False, len(new)
    return vectors, skipped, True, len(new)


def _decoded_batches(
    options: BuildOptions, todo: list[s3.S3Object], *, client: s3.S3Client, batch_size: int
) -> Iterator[tuple[list[tuple[s3.S3Object, Image.Image]], list[Skipped]]]:
    """Batches of decoded images in ``todo`` order; downloads run ahead in a thread pool so the
    model never waits on S3, while the window bounds how many images sit in memory."""
    window = batch_size * 2 + options.workers
    with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="fetch") as pool:
        pending: deque[tuple[s3.S3Object, Future[Image.Image]]] = deque()
        remaining = iter(todo)
        batch: list[tuple[s3.S3Object, Image.Image]] = []
        failures: list[Skipped] = []
        while True:
            while len(pending) < window and (obj := next(remaining, None)) is not None:
                pending.append((obj, pool.submit(_fetch, client, options, obj)))
            if not pending:
                break
            obj, future = pending.popleft()
            try:
                batch.append((obj, future.result()))
            except (ImageSearchError, OSError) as exc:
                failures.append(Skipped(key=obj.key, reason=str(exc)))
                LOG.warning("skipping %s: %s", obj.key, exc)
            if len(batch) >= batch_size:
                yield batch, failures
                batch, failures = [], []
        if batch or failures:
            yield batch, failures


def _fetch(client: s3.S3Client, options: BuildOptions, obj: s3.S3Object) -> Image.Image:
    try:
        data = s3.get_bytes(client, bucket=options.bucket, key=obj.key)
    except Exception as exc:
        if s3.is_missing(exc):
            raise StorageUnavailableError("deleted during the build") from exc
        raise
    return images.decode(data, max_pixels=options.max_pixels)


def _save_checkpoint(
    options: BuildOptions, plan: _Plan, new: dict[s3.S3Object, Vectors], *, client: s3.S3Client
) -> None:
    if not new:
        return
    objs = list(new)
    checkpoint = store.Checkpoint(
        model=options.model,
        keys=[obj.key for obj in objs],
        etags=[obj.etag for obj in objs],
        vectors=np.stack([new[obj] for obj in objs]),
    )
    # Keep what an earlier interrupted run had checkpointed too.
    old = store.load_checkpoint(client, bucket=options.bucket, index_prefix=options.index_prefix)
    if old is not None and old.model == options.model:
        fresh = {(k, e) for k, e in zip(checkpoint.keys, checkpoint.etags, strict=True)}
        keep = [
            row
            for row, pair in enumerate(zip(old.keys, old.etags, strict=True))
            if pair not in fresh
        ]
        checkpoint = store.Checkpoint(
            model=options.model,
            keys=checkpoint.keys + [old.keys[row] for row in keep],
            etags=checkpoint.etags + [old.etags[row] for row in keep],
            vectors=np.concatenate([checkpoint.vectors, old.vectors[keep]])
            if keep
            else checkpoint.vectors,
        )
    store.save_checkpoint(
        client, bucket=options.bucket, index_prefix=options.index_prefix, checkpoint=checkpoint
    )
    LOG.info("checkpoint saved: %d vectors", len(checkpoint.keys))


def _publish(
    options: BuildOptions,
    plan: _Plan,
    vectors: dict[str, Vectors],
    report: BuildReport,
    *,
    client: s3.S3Client,
) -> None:
    items = [
        Item(key=obj.key, folder=obj.folder, etag=obj.etag, size=obj.size)
        for obj in plan.objects
        if obj.key in vectors
    ]
    if not items:
        raise NoImagesError(f"none of the {len(plan.objects)} images could be decoded")
    matrix = np.stack([vectors[item.key] for item in items]).astype(np.float32)
    index_type = faiss_index.choose_type(options.index_type, len(items))
    index = faiss_index.build(matrix, index_type=index_type)
    metadata = Metadata(
        build_id=store.new_build_id(),
        model=options.model,
        dim=matrix.shape[1],
        index_type=index_type,
        count=len(items),
        bucket=options.bucket,
        folders=folder_ranges(items),
        items=items,
        skipped=report.skipped,
    )
    store.publish(
        client,
        bucket=options.bucket,
        index_prefix=options.index_prefix,
        metadata=metadata,
        index=index,
        vectors=matrix,
        keep_builds=options.keep_builds,
    )
    store.delete_checkpoint(client, bucket=options.bucket, index_prefix=options.index_prefix)
    report.build_id = metadata.build_id
    report.count = len(items)
    report.index_type = index_type
    report.published = True
