"""(3) Build throughput from S3 against bare ``embed_images``, and the no-change rebuild, with
both runtimes (torch, ONNX Runtime) on the same model.

End to end is the product's ``run_build`` (list, download and decode in threads, embed, FAISS,
publish) over JPEGs in a moto S3 server reached over HTTP. The floor is ``embed_images`` on
batches of the same size that are already decoded: what the model alone can do.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from bench.fixtures import photos
from bench.fixtures.timing import TimedEmbedder
from bench.report.stats import Report, Rounds, Row
from image_search.build.pipeline import run_build
from image_search.config import Settings
from image_search.model import images
from image_search.storage import s3

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

BUCKET = "bench-build"
TARGET = 0.9
BUILD_TARGET = 2.0  # ONNX build throughput from S3, as a multiple of torch's


def run(shared: Shared) -> None:
    """Each runtime's build rounds, then the ONNX build's rate against torch's."""
    count = shared.sizes.build_images
    rates = {}
    for runtime, embedder in shared.embedders.items():
        LOG.info("(3) build throughput, %s: %d JPEGs", runtime, count)
        shared.s3()
        rates[runtime] = _runtime(
            shared.report,
            embedder=embedder,
            count=count,
            rounds=shared.sizes.build_rounds,
            runtime=runtime,
        )
    ratio = rates["onnx"] / rates["torch"]
    shared.report.add(
        Row(
            f"build {count} JPEGs",
            "run_build from S3, onnx against torch",
            rates["onnx"],
            "img/s",
            floor=rates["torch"],
            ratio=ratio,
            target=f"≥ {BUILD_TARGET}× torch",
            ok=ratio >= BUILD_TARGET,
            note="floor = the torch build's rate",
        )
    )


def _runtime(report: Report, *, embedder: Any, count: int, rounds: int, runtime: str) -> float:
    """One runtime's build rounds; returns the median end-to-end rate (img/s)."""
    client = s3.make_client(max_connections=16)
    bucket = f"{BUCKET}-{runtime}"
    client.create_bucket(Bucket=bucket)
    payloads = photos.upload(client, bucket=bucket, count=count)
    settings = Settings(bucket=bucket, model=embedder.source, download_workers=8)
    batch = [
        images.decode(payloads[i % len(payloads)], max_pixels=10**8)
        for i in range(embedder.batch_size)
    ]
    embedder.embed_images(batch[:2])  # first-call warm-up, as a running build has had
    end_to_end: list[float] = []
    floor: list[float] = []
    inside: list[float] = []
    for round_ in range(rounds):
        timing = TimedEmbedder(embedder)
        started = time.perf_counter()
        result = run_build(settings, client=client, embedder=timing, full=True)
        seconds = time.perf_counter() - started
        assert result.published and result.count == count, result.line()
        end_to_end.append(count / seconds)
        inside.append(count / timing.seconds)
        floor.append(_bare_rate(embedder, batch, batches=max(2, count // embedder.batch_size // 4)))
        LOG.info(
            "build round %d: %.2f img/s end to end, floor %.2f", round_, *end_to_end[-1:], floor[-1]
        )
    group = f"build {count} JPEGs, {runtime}"
    e2e, bare = Rounds(end_to_end), Rounds(floor)
    ratio = e2e.median / bare.median
    report.add(Row.of(group, "embed_images (floor)", bare, "img/s"))
    report.add(
        Row.of(
            group,
            "embed_images inside run_build",
            Rounds(inside),
            "img/s",
            note="the model's own rate while downloads and decoding run beside it",
        )
    )
    report.add(
        Row.of(
            group,
            "run_build from S3",
            e2e,
            "img/s",
            floor=bare.median,
            ratio=ratio,
            target=f"ratio ≥ {TARGET}",
            ok=ratio >= TARGET,
        )
    )
    _incremental(
        report, group=group, client=client, settings=settings, embedder=embedder, rounds=rounds
    )
    return e2e.median


def _bare_rate(embedder: Any, batch: list[Any], *, batches: int) -> float:
    started = time.perf_counter()
    for _ in range(batches):
        embedder.embed_images(batch)
    return batches * len(batch) / (time.perf_counter() - started)


def _incremental(
    report: Report,
    *,
    group: str,
    client: s3.S3Client,
    settings: Settings,
    embedder: Any,
    rounds: int,
) -> None:
    rebuild: list[float] = []
    listing: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = run_build(settings, client=client, embedder=embedder)
        rebuild.append(time.perf_counter() - started)
        assert result.embedded == 0 and not result.published, result.line()
        started = time.perf_counter()
        s3.list_images(client, bucket=settings.bucket, folders=[], exclude_prefix="index/")
        listing.append(time.perf_counter() - started)
    again, listed = Rounds([s * 1000 for s in rebuild]), Rounds([s * 1000 for s in listing])
    report.add(Row.of(group, "listing alone", listed, "ms"))
    report.add(
        Row.of(
            group,
            "rebuild, nothing changed",
            again,
            "ms",
            floor=listed.median,
            ratio=again.median / listed.median,
            note="listing + pointer + last build's vectors",
        )
    )
