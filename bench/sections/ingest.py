"""(15) Ingest throughput (issue 25): a burst of uploads made searchable by ingest, against the
build over the same images with the same embedder (ONNX Runtime, what the Lambda image runs).

**Ingest.** A bucket with a small published build has its change events going to an SQS queue:
moto sends S3's own notifications, one message per upload. The burst's JPEGs (the build
section's) are put, and their messages received and deleted as they arrive. Those messages are
then handed to ingest the way the event source mapping hands them to ``handler.ingest``: in
batches of the template's ``IngestBatchSize`` (100), one invocation after another, the view of
the index kept between them as a warm function keeps it. The clock runs from the first batch
to the last one's published segment.

Why not time the consumer on moto's queue: moto's ReceiveMessage reads the queue's attributes
for every message it returns, and those scan the whole queue, so with 1,000 messages waiting a
receive of 10 takes seconds here (a fraction of a millisecond per message waiting, for each
message returned) where SQS answers in milliseconds. The queue is drained while the burst is
put, so it never gets deep.

**Build.** A second bucket holding the same images (the base and the burst) is built from scratch
(``run_build``, full) by the same embedder with the same download threads.

Each round makes both buckets afresh; the order of the two alternates from round to round, so a
change of the machine's load hits both. Each also counts its time inside ``embed_images``: the
share of its time the model takes is the comparison a change of load between the two cannot
tilt.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.fixtures import photos
from bench.fixtures.events import events_queue, sqs_on_s3_server
from bench.fixtures.timing import TimedEmbedder
from bench.report.stats import Rounds, Row
from image_search.artefacts.location import IndexLocation
from image_search.build.options import BuildOptions
from image_search.build.pipeline import run_build
from image_search.config import Settings
from image_search.ingest.batch import Message, ingest
from image_search.ingest.consumer import total
from image_search.ingest.view import ViewCache
from image_search.model import images
from image_search.storage import s3

if TYPE_CHECKING:
    from bench.sections.shared import Shared
    from image_search.model.embedder import Embedder

LOG = logging.getLogger(__name__)

TARGET = 0.8  # issue 25: ingest's img/s against the build's
BASE = 8  # images of the build the burst lands on
WORKERS = 8  # download threads, both (the build section's)
BATCH = 100  # template.yaml's IngestBatchSize (and the consumer's IMAGE_SEARCH_INGEST_BATCH_SIZE)
SLICE = 50  # uploads put before their messages are received: moto's queue stays short
QUEUED_S = 30  # how long a slice's notifications may take to arrive


def run(shared: Shared) -> None:
    count, rounds = shared.sizes.ingest_images, shared.sizes.build_rounds
    LOG.info("(15) ingest throughput: a burst of %d uploads, %d rounds", count, rounds)
    shared.s3()
    embedder = shared.embedders["onnx"]
    burst = [photos.jpeg(seed) for seed in range(count)]
    base = [photos.jpeg(count + seed) for seed in range(BASE)]
    embedder.embed_images([images.decode(burst[0], max_pixels=10**8)] * 2)  # first-call warm-up
    timed: dict[str, list[_Timed]] = {"ingest": [], "build": []}
    with sqs_on_s3_server() as sqs:
        for round_ in range(rounds):
            for what in ("ingest", "build") if round_ % 2 == 0 else ("build", "ingest"):
                if what == "build":
                    timed[what].append(_build(embedder, base=base, burst=burst))
                else:
                    timed[what].append(_ingest(sqs, embedder, base=base, burst=burst))
            LOG.info(
                "ingest round %d: %.2f img/s (model %.2f), build %.2f img/s (model %.2f)",
                round_,
                *timed["ingest"][-1].rates,
                *timed["build"][-1].rates,
            )
    _report(shared, count=count, ingested=timed["ingest"], built=timed["build"])


@dataclass(frozen=True)
class _Timed:
    images: int
    seconds: float  # ingest: the first batch's start → the last one's segment published
    model_seconds: float  # of which inside embed_images
    segments: int  # published by ingest

    @property
    def rates(self) -> tuple[float, float]:
        """Images per second end to end, and inside the model."""
        return self.images / self.seconds, self.images / self.model_seconds


def _bucket(client: s3.S3Client, objects: dict[str, bytes]) -> str:
    bucket = f"bench-ingest-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    photos.put_all(client, bucket=bucket, objects=objects)
    return bucket


def _keys(base: list[bytes], burst: list[bytes]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The base build's objects and the burst's, under the build section's folder names."""
    first = {f"base/photo-{n:05d}.jpg": data for n, data in enumerate(base)}
    then = {f"folder{n % 4}/photo-{n:05d}.jpg": data for n, data in enumerate(burst)}
    return first, then


def _settings(bucket: str, embedder: Embedder) -> Settings:
    return Settings(bucket=bucket, model=embedder.source, download_workers=WORKERS)


def _build(embedder: Embedder, *, base: list[bytes], burst: list[bytes]) -> _Timed:
    """A full build of the base and the burst together."""
    client = s3.make_client(max_connections=16)
    first, then = _keys(base, burst)
    bucket = _bucket(client, first | then)
    timing = TimedEmbedder(embedder)
    started = time.perf_counter()
    report = run_build(_settings(bucket, embedder), client=client, embedder=timing, full=True)
    seconds = time.perf_counter() - started
    assert report.published and report.count == len(first) + len(then), report.line()
    return _Timed(report.count, seconds, timing.seconds, segments=0)


def _ingest(sqs: Any, embedder: Embedder, *, base: list[bytes], burst: list[bytes]) -> _Timed:
    """The burst put on a built bucket, then ingested from its notifications, batch by batch."""
    client = s3.make_client(max_connections=16)
    first, then = _keys(base, burst)
    bucket = _bucket(client, first)
    settings = _settings(bucket, embedder)
    assert run_build(settings, client=client, embedder=embedder).published
    messages = _burst(sqs, client, bucket=bucket, objects=then)
    where = IndexLocation(client, bucket, settings.index_prefix)
    options, views = BuildOptions.of(settings), ViewCache()
    timing = TimedEmbedder(embedder)
    reports = []
    started = time.perf_counter()
    for at in range(0, len(messages), BATCH):
        batch = messages[at : at + BATCH]
        reports.append(ingest(where, options, batch, embedder=timing, views=views))
    seconds = time.perf_counter() - started
    done = total(reports)
    assert done.added == len(then) and not done.failed and not done.skipped, done.line()
    published = sum(1 for report in reports if report.segment_id)
    return _Timed(len(then), seconds, timing.seconds, published)


def _burst(
    sqs: Any, client: s3.S3Client, *, bucket: str, objects: dict[str, bytes]
) -> list[Message]:
    """``objects`` put in ``bucket`` a slice at a time; the notifications S3 sent for them."""
    queue = events_queue(sqs, client, bucket)
    keys = list(objects)
    messages: list[Message] = []
    for at in range(0, len(keys), SLICE):
        part = keys[at : at + SLICE]
        photos.put_all(client, bucket=bucket, objects={key: objects[key] for key in part})
        messages += _received(sqs, queue, count=len(part))
    return messages


def _received(sqs: Any, queue: str, *, count: int) -> list[Message]:
    """``count`` messages, received and deleted from ``queue``."""
    found: list[Message] = []
    deadline = time.monotonic() + QUEUED_S
    while len(found) < count:
        assert time.monotonic() < deadline, "the burst's notifications did not all arrive"
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        received = answer.get("Messages", [])
        if received:
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(received)
            ]
            sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
        found += [Message(message_id=m["MessageId"], body=m["Body"]) for m in received]
    return found


def _report(shared: Shared, *, count: int, ingested: list[_Timed], built: list[_Timed]) -> None:
    group = f"ingest a burst of {count} uploads, onnx"
    build = Rounds([one.rates[0] for one in built])
    ingest_ = Rounds([one.rates[0] for one in ingested])
    inside = "the model's own rate while HEADs, downloads and publishes run beside it"
    shared.report.add(Row.of(group, "build from scratch, the same images", build, "img/s"))
    shared.report.add(
        Row.of(group, "embed_images inside the build", Rounds([o.rates[1] for o in built]), "img/s")
    )
    shared.report.add(
        Row.of(
            group,
            "embed_images inside ingest",
            Rounds([one.rates[1] for one in ingested]),
            "img/s",
            note=inside,
        )
    )
    ratio = ingest_.median / build.median
    segments = sorted({one.segments for one in ingested})
    shared.report.add(
        Row.of(
            group,
            "ingest: S3 notifications → segments",
            ingest_,
            "img/s",
            floor=build.median,
            ratio=ratio,
            target=f"≥ {TARGET}× the build",
            ok=ratio >= TARGET,
            note=f"batches of {BATCH} messages one at a time, {'/'.join(map(str, segments))} "
            "segments",
        )
    )
    # What each adds to its model's own time, measured in the same minutes: the comparison
    # the machine's load (which moves the model's rate between the two) cannot tilt.
    kept = Rounds([one.rates[0] / one.rates[1] for one in ingested])
    built_kept = Rounds([one.rates[0] / one.rates[1] for one in built])
    shared.report.add(
        Row.of(
            group,
            "ingest, share of its time in the model",
            kept,
            "",
            floor=built_kept.median,
            ratio=kept.median / built_kept.median,
            note="floor: the build's share",
        )
    )
