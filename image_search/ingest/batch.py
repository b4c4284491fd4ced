"""One ingest batch: messages → the keys they name → what S3 holds now → one segment, published.

For each key an event names (inside the indexed folders, outside the index prefix): events at
or before the last sequencer applied are dropped unseen; the rest are looked up (HEAD), and the
key's state now is compared with the served view's (ingest/view.py). A key gone from S3 but in
the view is deleted; a new ETag is fetched pinned to it, decoded and embedded exactly as the
build's shard stage does (build/fetch.py: the same limits, the same skip rules, the photo fields
its header gives), and added, with a delete of the old row when it overwrites one. Everything
else changes nothing.

The view is read from the pointer before any HEAD, and the segment is published with If-Match on
that pointer (artefacts/segment_publish.py). If another writer got there first, the batch is
made again from the new pointer, HEADs included, so what it publishes is never older than what
was published in between; vectors already computed for an ETag are kept.

A message fails (SQS delivers it again, then to the dead-letter queue) when it is no notification,
or when a key it names could not be looked up or downloaded; keys that fail are left out of the
segment, the others are published.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from image_search.artefacts.location import IndexLocation, new_segment_id
from image_search.artefacts.manifest import ItemPhoto, Pointer, Skipped
from image_search.artefacts.photos import Photo
from image_search.artefacts.segment_publish import current, publish_segment
from image_search.artefacts.segments import Applied, Segment
from image_search.build.fetch import decoded_batches
from image_search.build.options import BuildOptions
from image_search.build.plan import item_of
from image_search.errors import ImageSearchError, IndexMismatchError, IndexNotReadyError
from image_search.ingest.events import BadMessageError, is_stale, later, parse_body
from image_search.ingest.view import View, ViewCache
from image_search.model.embedder import Embedder
from image_search.model.vectors import Vectors
from image_search.storage import s3

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    """One SQS message: its id (what a partial batch failure names) and its body."""

    message_id: str
    body: str


@dataclass
class IngestReport:
    messages: int = 0
    failed: set[str] = field(default_factory=set)  # message ids SQS should deliver again
    added: int = 0
    deleted: int = 0  # an overwrite counts as added and deleted
    unchanged: int = 0  # the view already holds what S3 holds (a duplicate, a late event)
    stale: int = 0  # dropped by sequencer, without a lookup
    ignored: int = 0  # outside the indexed folders, the index's own objects, another bucket
    skipped: list[Skipped] = field(default_factory=list)
    segment_id: str | None = None

    def counts(self) -> dict[str, object]:
        """The report as a log record's fields."""
        return {
            "messages": self.messages,
            "failed": len(self.failed),
            "added": self.added,
            "deleted": self.deleted,
            "skipped": len(self.skipped),
            "unchanged": self.unchanged,
            "stale": self.stale,
            "ignored": self.ignored,
            "segment_id": self.segment_id,
        }

    def line(self, published: str | None = None) -> str:
        if published is None:
            published = f"segment {self.segment_id}" if self.segment_id else "no segment"
        return (
            f"ingest: {self.messages} message(s), {self.added} added, {self.deleted} deleted, "
            f"{len(self.skipped)} skipped, {self.unchanged} unchanged, {self.stale} stale, "
            f"{self.ignored} ignored, {len(self.failed)} failed; {published}"
        )


@dataclass
class _Pending:
    sequencer: str | None  # the latest of the batch's events for the key
    messages: set[str]


def ingest(
    where: IndexLocation,
    options: BuildOptions,
    messages: list[Message],
    *,
    embedder: Embedder,
    views: ViewCache,
) -> IngestReport:
    """Apply ``messages`` to the published index as one segment; which messages failed."""
    report = IngestReport(messages=len(messages))
    pending = _pending(where, options, messages, report)
    if not pending:
        return report
    try:
        tagged = current(where)
    except IndexNotReadyError as exc:
        # The first build lists the bucket: it indexes these objects without their events.
        LOG.warning("%s; %d key(s) left to it", exc, len(pending))
        return report
    batch = _Batch(where, options, pending, embedder=embedder, views=views)
    made = batch.make(tagged[0])
    if made is not None:
        pointer = publish_segment(where, *made, based_on=tagged, refresh=batch.make)
        named = {ref.segment_id for ref in pointer.segments or []}
        if batch.segment_id in named:
            report.segment_id = batch.segment_id
    batch.tally(report)
    LOG.info(report.line(), extra={"ingest": report.counts()})  # fields in JSON log lines
    return report


def _pending(
    where: IndexLocation, options: BuildOptions, messages: list[Message], report: IngestReport
) -> dict[str, _Pending]:
    pending: dict[str, _Pending] = {}
    for message in messages:
        try:
            events = parse_body(message.body)
        except BadMessageError as exc:
            LOG.error("message %s is refused: %s", message.message_id, exc)
            report.failed.add(message.message_id)
            continue
        for event in events:
            indexed = s3.is_indexed_key(
                event.key, folders=options.folders, exclude_prefix=where.prefix
            )
            if event.bucket != where.bucket or not indexed:
                report.ignored += 1
                continue
            one = pending.setdefault(event.key, _Pending(None, set()))
            one.sequencer = later(one.sequencer, event.sequencer)
            one.messages.add(message.message_id)
    return pending


@dataclass
class _Looked:
    """What S3 holds for a key now: an object (and its version), or nothing."""

    obj: s3.S3Object | None
    version_id: str | None = None


class _Batch:
    """The batch's keys, made into a segment against a given pointer, as often as needed."""

    def __init__(
        self,
        where: IndexLocation,
        options: BuildOptions,
        pending: dict[str, _Pending],
        *,
        embedder: Embedder,
        views: ViewCache,
    ) -> None:
        self.where, self.options, self.pending = where, options, pending
        self.embedder, self.views = embedder, views
        self.vectors: dict[tuple[str, str], Vectors] = {}  # (key, ETag) → its row, across tries
        self.photos: dict[tuple[str, str], ItemPhoto] = {}  # the fields its header gave
        self.broken: dict[tuple[str, str], Skipped] = {}
        self.segment: Segment | None = None
        self.failed: set[str] = set()  # keys
        self.stale = self.unchanged = 0

    @property
    def segment_id(self) -> str | None:
        return self.segment.segment_id if self.segment is not None else None

    def make(self, pointer: Pointer) -> tuple[Segment, Vectors] | None:
        """The segment that brings ``pointer``'s view to what S3 holds now (None: nothing to do)."""
        view = self.views.view(self.where, pointer)
        if view.model != self.embedder.identity or view.dim != self.embedder.dim:
            raise IndexMismatchError(
                f"build {pointer.build_id} was made with {view.model} ({view.dim} wide); this "
                f"ingest embeds with {self.embedder.identity} ({self.embedder.dim}): rebuild "
                "with the ingest's model or configure the build's"
            )
        live = [
            key
            for key, one in self.pending.items()
            if not is_stale(one.sequencer, applied=view.sequencers.get(key))
        ]
        self.stale = len(self.pending) - len(live)
        self.failed = set()
        looked = self._look(live)
        changed = {key: found for key, found in looked.items() if _differs(view, key, found)}
        self.unchanged = len(looked) - len(changed)
        self._embed([found.obj for found in changed.values() if found.obj is not None])
        self.segment = self._segment(view, changed)
        if self.segment is None:
            return None
        rows = [self.vectors[(item.key, item.etag)] for item in self.segment.items]
        vectors = np.vstack(rows) if rows else np.zeros((0, view.dim), dtype=np.float32)
        return self.segment, vectors

    def _look(self, keys: Iterable[str]) -> dict[str, _Looked]:
        def head(key: str) -> _Looked | None:
            try:
                found = s3.head(self.where.client, bucket=self.where.bucket, key=key)
            except ImageSearchError as exc:
                LOG.warning("could not look %s up: %s", key, exc)
                return None
            return _Looked(None) if found is None else _Looked(*found)

        keys = list(keys)
        workers = max(1, min(self.options.download_workers, len(keys)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="head") as pool:
            answers = dict(zip(keys, pool.map(head, keys), strict=True))
        self.failed |= {key for key, answer in answers.items() if answer is None}
        return {key: answer for key, answer in answers.items() if answer is not None}

    def _embed(self, todo: list[s3.S3Object]) -> None:
        """Vectors for the objects not embedded by an earlier try, the build's way."""
        done = self.vectors.keys() | self.broken.keys()
        todo = [obj for obj in todo if (obj.key, obj.etag) not in done]
        batches = decoded_batches(
            todo,
            client=self.where.client,
            bucket=self.where.bucket,
            options=self.options,
            batch_size=self.embedder.batch_size,
        )
        for batch, failures in batches:
            for skipped in failures:
                if skipped.cause == "image":
                    self.broken[(skipped.key, skipped.etag or "")] = skipped
                else:  # a download that failed: SQS delivers the event again
                    self.failed.add(skipped.key)
            if batch:
                rows = self.embedder.embed_images([one.image for one in batch])
                for one, row in zip(batch, rows, strict=True):
                    self.vectors[(one.obj.key, one.obj.etag)] = row
                    photo = Photo.read(one.fields, size=one.obj.size, modified=one.obj.modified)
                    self.photos[(one.obj.key, one.obj.etag)] = photo.document()

    def _segment(self, view: View, changed: dict[str, _Looked]) -> Segment | None:
        """The changes as a segment: deletes for keys gone or overwritten, adds for the new
        ETags that embedded, skips for those that do not decode (None: no change at all)."""
        items, deletes, skipped, applied = [], [], [], []
        for key in sorted(changed.keys() - self.failed):
            found = changed[key]
            obj = found.obj
            if obj is not None and (obj.key, obj.etag) in self.vectors:
                items.append(item_of(obj, photo=self.photos.get((obj.key, obj.etag))))
            elif obj is not None:
                skipped.append(self.broken[(obj.key, obj.etag)])
            if key in view.etags:
                deletes.append(key)
            etag = obj.etag if obj is not None else None
            sequencer = self.pending[key].sequencer
            applied.append(
                Applied(key=key, etag=etag, version_id=found.version_id, sequencer=sequencer)
            )
        if not (items or deletes or skipped):
            return None
        return Segment(
            segment_id=new_segment_id(),
            base_build_id=view.pointer.build_id,
            model=view.model,
            dim=view.dim,
            items=items,
            deletes=deletes,
            skipped=skipped,
            applied=applied,
        )

    def tally(self, report: IngestReport) -> None:
        segment = self.segment
        if segment is not None and report.segment_id is not None:
            report.added = len(segment.items)
            report.deleted = len(segment.deletes)
            report.skipped = list(segment.skipped)
        report.stale, report.unchanged = self.stale, self.unchanged
        for key in self.failed:
            report.failed |= self.pending[key].messages


def _differs(view: View, key: str, found: _Looked) -> bool:
    """Whether S3's state of ``key`` is not the view's: a duplicate or late event, or a change a
    build or another batch already published, changes nothing."""
    if found.obj is None:
        return key in view.etags
    etag = found.obj.etag
    return view.etags.get(key) != etag and view.broken.get(key) != etag
