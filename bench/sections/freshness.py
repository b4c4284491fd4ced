"""(13) Freshness (issue 25): what segments cost a search, and how long an upload takes to be found.

**Search cost.** Text search through the service in this process (a new text each time, so the
model runs) over the largest search build with 0, 1k, 10k and 50k images in segments: 1,000 adds
a segment (the keys spread over the folders, vectors from the build's clusters) and a delete of a
build row for every 50 adds. The levels are served side by side from copies of the build and
measured in alternating rounds, so the machine's drift hits them alike. Beside the p50: the
search stage alone, applying one more segment (the view is made again), and a cold start's
fetch and check of every segment. Where the p50 crosses ``COMPACT_RATIO`` of the one without
segments, a compaction (a build folding them in) pays off: ``Settings.compact_after_images``.

**Put → searchable.** A copy of the build with its bucket's events going to an SQS queue (moto
sends them), the ingest consumer running (``python -m image_search ingest``'s code, its default
window) and ``uvicorn handler:app`` polling current.json at its default interval. One upload every
``GAP_S``; a client asks the service for the uploaded folder every ``CHECK_S`` and notes when each
key first appears.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from bench.fixtures import data, photos
from bench.fixtures.publish import FOLDERS, INDEX_PREFIX, Published
from bench.fixtures.server import service_env, uvicorn_server
from bench.report.stats import Rounds, Row, percentile, timed
from image_search.artefacts import loader
from image_search.artefacts.location import IndexLocation, new_segment_id
from image_search.artefacts.manifest import Item
from image_search.artefacts.segment_publish import publish_segment
from image_search.artefacts.segments import Segment
from image_search.artefacts.view import LoadedSegment
from image_search.config import Settings
from image_search.serve.service import SearchService
from image_search.storage import s3

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

SEGMENT_ADDS = 1_000
DELETE_EVERY = 50  # one build row deleted per this many adds
COMPACT_RATIO = 1.2  # issue 25's target at 10k images in segments
GAP_S = 1.0
CHECK_S = 0.2
QUERIES = ("a red car at night", "dogs on a beach", "snow on mountains", "fruit on a table")


def run(shared: Shared) -> None:
    shared.s3()
    base = shared.published[-1]
    sizes = shared.sizes
    _search_cost(shared, base, levels=sizes.segment_levels)
    _put_to_found(shared, base, uploads=sizes.fresh_uploads)


# ---- search cost -----------------------------------------------------------------------------


def _search_cost(shared: Shared, base: Published, *, levels: tuple[int, ...]) -> None:
    LOG.info("(13) segments on %d images: %s images in segments", base.count, levels)
    embedder = shared.embedders["onnx"]
    group = f"segments: text search, {base.count // 1000}k {base.index_type} build, onnx"
    services = {}
    for level in levels:
        bucket = _copy(base.bucket)
        _add_segments(bucket, base, adds=level, model=embedder.identity)
        settings = Settings(  # type: ignore[call-arg]
            bucket=bucket,
            model=embedder.source,
            runtime="onnx",
            refresh_seconds=0,  # nothing changes meanwhile: no checks during the series
            index_cache_dir=shared.work / f"segments-{level}",
            model_cache_dir=shared.work / "models",
        )
        services[level] = SearchService(settings)
        services[level].current()
    rounds, per_round = shared.sizes.search_rounds, shared.sizes.text_requests * 2
    wall: dict[int, list[float]] = {level: [] for level in levels}
    stage: dict[int, list[float]] = {level: [] for level in levels}
    for service in services.values():  # warm: the model, the first pages of every file
        service.search_text(QUERIES[0], k=10)
    for _ in range(rounds):
        samples: dict[int, list[float]] = {level: [] for level in levels}
        stages: dict[int, list[float]] = {level: [] for level in levels}
        for turn in range(per_round):
            # The same new text on every level, the levels in turn in a rotating order: the
            # machine's drift (it is shared) hits them alike, query by query.
            text = f"{QUERIES[turn % len(QUERIES)]} ({len(wall[levels[0]])}.{turn})"
            for level in levels[turn % len(levels) :] + levels[: turn % len(levels)]:
                started = time.perf_counter()
                result = services[level].search_text(text, k=10)
                samples[level].append((time.perf_counter() - started) * 1000)
                stages[level].append(result.timings["search"])
        for level in levels:
            wall[level].append(percentile(samples[level], 50))
            stage[level].append(percentile(stages[level], 50))
    index_p50 = _index_search(services, count=base.count, probes=rounds * per_round * 4)
    none = Rounds(wall[levels[0]]).median
    ratios = {}
    for level in levels:
        p50 = Rounds(wall[level])
        ratios[level] = p50.median / none
        target = {"target": f"ratio ≤ {COMPACT_RATIO}", "ok": ratios[level] <= COMPACT_RATIO}
        checked = target if level == 10_000 else {}
        name = f"{level:,} in segments: text search p50"
        report = shared.report
        report.add(Row.of(group, name, p50, "ms", floor=none, ratio=ratios[level], **checked))
        search = Rounds(stage[level])
        report.add(Row.of(group, f"{level:,} in segments: search stage p50", search, "ms"))
        report.add(
            Row(
                group,
                f"{level:,} in segments: the view's index.search p50, in a loop",
                index_p50[level],
                "ms",
                floor=index_p50[levels[0]],
                ratio=index_p50[level] / index_p50[levels[0]],
            )
        )
        if level:
            _apply_and_load(shared, group, service=services[level], level=level)
    shared.report.add(
        Row(
            group,
            f"images in segments where the p50 reaches {COMPACT_RATIO}x (interpolated)",
            float(_crossing(ratios)),
            "images",
            note="the default of IMAGE_SEARCH_COMPACT_AFTER_IMAGES follows from it",
        )
    )


def _index_search(
    services: dict[int, SearchService], *, count: int, probes: int
) -> dict[int, float]:
    """p50 ms of each view's ``index.search`` (k=10) alone, the levels in turn query by query:
    what segments add, without the model's noise."""
    queries = data.queries(count, probes)
    views = {level: service.current() for level, service in services.items()}
    levels = list(views)
    samples: dict[int, list[float]] = {level: [] for level in levels}
    for turn, query in enumerate(queries):
        for level in levels[turn % len(levels) :] + levels[: turn % len(levels)]:
            index = views[level].index
            samples[level].append(timed(lambda: index.search(query, k=10)) * 1000)  # noqa: B023
    return {level: percentile(found, 50) for level, found in samples.items()}


def _apply_and_load(shared: Shared, group: str, *, service: SearchService, level: int) -> None:
    """One more segment applied on a view of ``level`` segment images, and every segment of it
    fetched and checked as a cold start does."""
    view = service.current()
    vectors = data.queries(len(view.base.metadata), SEGMENT_ADDS)
    items = [_item(row, name="more") for row in range(SEGMENT_ADDS)]
    more = LoadedSegment(new_segment_id(), items, [], vectors)
    applied = [timed(lambda: view.extended([more])) * 1000 for _ in range(3)]
    shared.report.add(
        Row(group, f"{level:,} in segments: one more segment applied", min(applied), "ms")
    )
    where = IndexLocation(service.client, service.settings.bucket, INDEX_PREFIX)
    pointer = loader.read_pointer(where)
    assert pointer is not None and pointer.segments
    catalog = view.base.metadata
    started = time.perf_counter()
    read = loader.load_segments(where, pointer.segments, base=catalog)
    assert read.problem is None, read.problem
    seconds = time.perf_counter() - started
    shared.report.add(
        Row(group, f"{level:,} in segments: fetched and checked at a cold start", seconds, "s")
    )


def _crossing(ratios: dict[int, float]) -> int:
    """The images in segments where the ratio reaches ``COMPACT_RATIO``, interpolated between the
    levels measured (the largest level when none reaches it)."""
    levels = sorted(ratios)
    for low, high in zip(levels, levels[1:], strict=False):
        if ratios[high] >= COMPACT_RATIO > ratios[low]:
            share = (COMPACT_RATIO - ratios[low]) / (ratios[high] - ratios[low])
            return int(low + share * (high - low))
    return levels[-1] if ratios[levels[-1]] < COMPACT_RATIO else levels[0]


def _item(row: int, *, name: str = "fresh") -> Item:
    folder = FOLDERS[row % len(FOLDERS)]
    key = f"{folder}/{name}-{row:07d}.jpg"
    return Item(key=key, folder=folder, etag=uuid.uuid4().hex, size=1)


def _add_segments(bucket: str, base: Published, *, adds: int, model: str) -> None:
    """``adds`` images in segments of ``SEGMENT_ADDS``, each deleting some build rows."""
    where = IndexLocation(s3.make_client(), bucket, INDEX_PREFIX)
    vectors = data.queries(base.count, adds) if adds else None
    rng = np.random.default_rng(5)
    deleted = rng.choice(base.count, size=adds // DELETE_EVERY, replace=False)
    per_segment = SEGMENT_ADDS // DELETE_EVERY
    for at, start in enumerate(range(0, adds, SEGMENT_ADDS)):
        assert vectors is not None
        chunk = vectors[start : start + SEGMENT_ADDS]
        rows = deleted[at * per_segment : (at + 1) * per_segment]
        pointer = loader.read_pointer(where)
        assert pointer is not None
        segment = Segment(
            segment_id=new_segment_id(),
            base_build_id=pointer.build_id,
            model=model,
            dim=chunk.shape[1],
            items=[_item(start + row) for row in range(len(chunk))],
            deletes=[_base_key(int(row)) for row in rows],
        )
        publish_segment(where, segment, chunk)


def _base_key(row: int) -> str:
    """The key bench/fixtures/publish.py gave the synthetic build's ``row``-th image."""
    return f"{FOLDERS[row % len(FOLDERS)]}/img-{row:07d}.jpg"


def _copy(source: str) -> str:
    client = s3.make_client()
    bucket = f"bench-fresh-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    for obj in s3.list_objects(client, bucket=source, prefix=INDEX_PREFIX):
        client.copy_object(
            Bucket=bucket, Key=obj["Key"], CopySource={"Bucket": source, "Key": obj["Key"]}
        )
    return bucket


# ---- put → searchable ------------------------------------------------------------------------


@dataclass
class _Uploads:
    put_at: dict[str, float]
    found_at: dict[str, float]


def _put_to_found(shared: Shared, base: Published, *, uploads: int) -> None:
    from image_search.ingest.consumer import consume, sqs_client

    LOG.info("(13) put → searchable: %d uploads into %d images", uploads, base.count)
    embedder = shared.embedders["onnx"]
    bucket = _copy(base.bucket)
    # moto's one server answers SQS too (boto3 finds it through AWS_ENDPOINT_URL_SQS).
    saved = os.environ.get("AWS_ENDPOINT_URL_SQS")
    os.environ["AWS_ENDPOINT_URL_SQS"] = os.environ["AWS_ENDPOINT_URL_S3"]
    sqs = sqs_client("http://queue")
    queue = _queue(sqs, bucket)
    settings = Settings(bucket=bucket, model=embedder.source)  # type: ignore[call-arg]
    stop = threading.Event()
    consumer = threading.Thread(
        target=consume,
        kwargs={
            "settings": settings,
            "queue_url": queue,
            "client": s3.make_client(),
            "sqs": sqs,
            "embedder": embedder,
            "stop": stop,
        },
        name="bench-ingest",
        daemon=True,
    )
    env = service_env(bucket=bucket, model=embedder.source, cache=shared.work / "fresh")
    env["IMAGE_SEARCH_RUNTIME"] = "onnx"
    for name in ("IMAGE_SEARCH_REFRESH_SECONDS", "IMAGE_SEARCH_POLL_SECONDS"):
        env.pop(name, None)  # the defaults: this measures them
    try:
        with uvicorn_server(env) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
            consumer.start()
            found = _upload_and_watch(client, bucket, uploads=uploads)
    finally:
        stop.set()
        consumer.join(60)
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_SQS", None)
        else:
            os.environ["AWS_ENDPOINT_URL_SQS"] = saved
    latencies = [found.found_at[key] - put for key, put in found.put_at.items()]
    missing = uploads - len(found.found_at)
    group = f"put → searchable, {base.count // 1000}k build, defaults (poll 10 s, window 2 s)"
    report = shared.report
    report.add(Row(group, "uploads (one a second)", float(uploads), ""))
    report.add(Row(group, "never found (within 120 s of the last)", float(missing), ""))
    report.add(Row(group, "p50", percentile(latencies, 50), "s"))
    p95 = percentile(latencies, 95)
    report.add(Row(group, "p95", p95, "s", target="≤ 30 s", ok=p95 <= 30 and not missing))
    report.add(Row(group, "max", max(latencies, default=float("nan")), "s"))


def _queue(sqs: Any, bucket: str) -> str:
    """A queue the bucket's object events go to, emptied of what came before."""
    url: str = sqs.create_queue(QueueName=f"bench-{bucket}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.make_client().put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    sqs.purge_queue(QueueUrl=url)
    return url


def _upload_and_watch(client: httpx.Client, bucket: str, *, uploads: int) -> _Uploads:
    found = _Uploads({}, {})
    storage = s3.make_client()

    def upload() -> None:
        for at in range(uploads):
            key = f"fresh/upload-{at:04d}.jpg"
            data = photos.jpeg(50_000 + at)
            storage.put_object(Bucket=bucket, Key=key, Body=data)
            found.put_at[key] = time.monotonic()
            time.sleep(GAP_S)

    uploader = threading.Thread(target=upload, name="bench-uploads", daemon=True)
    uploader.start()
    deadline = None
    while len(found.found_at) < uploads:
        if deadline is None and not uploader.is_alive():
            deadline = time.monotonic() + 120
        if deadline is not None and time.monotonic() > deadline:
            break
        body = {"query": "an upload", "prefix": "fresh/", "k": 100}
        answer = client.post("/image_search/search", json=body)
        now = time.monotonic()
        if answer.status_code == 200:
            for hit in answer.json():
                found.found_at.setdefault(hit["key"], now)
        elif answer.status_code != 404:  # 404: no key under fresh/ is searchable yet
            answer.raise_for_status()
        time.sleep(CHECK_S)
    uploader.join()
    return found
