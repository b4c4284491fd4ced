"""(3) Build throughput from S3 against bare ``embed_images``, and the no-change rebuild, with
both runtimes (torch, ONNX Runtime) on the same model.

End to end is the product's ``run_build`` (list, download and decode in threads, embed, FAISS,
publish) over JPEGs in a moto S3 server reached over HTTP. The floor is ``embed_images`` on
batches of the same size that are already decoded: what the model alone can do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.fixtures import photos
from bench.report.stats import Report, Rounds, Row
from image_search.build.pipeline import run_build
from image_search.config import Settings
from image_search.model import images
from image_search.storage import s3

if TYPE_CHECKING:
    from PIL import Image

    from bench.sections.shared import Shared
    from image_search.model.embedder import Embedder
    from image_search.model.vectors import Vectors

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
        timing = _TimedEmbedder(embedder)
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


class _TimedEmbedder:
    """The embedder, counting the seconds the build spends inside ``embed_images``."""

    def __init__(self, embedder: Embedder) -> None:
        self.source = embedder.source
        self.batch_size = embedder.batch_size
        self.runtime = embedder.runtime
        self._embedder = embedder
        self.seconds = 0.0

    @property
    def precision(self) -> str:
        return self._embedder.precision

    @property
    def identity(self) -> str:
        return self._embedder.identity

    @property
    def dim(self) -> int:
        return self._embedder.dim

    def load(self) -> _TimedEmbedder:
        self._embedder.load()
        return self

    def load_text(self) -> _TimedEmbedder:
        self._embedder.load_text()
        return self

    @property
    def image_ready(self) -> bool:
        return self._embedder.image_ready

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        return self._embedder.embed_texts(texts)

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        started = time.perf_counter()
        try:
            return self._embedder.embed_images(images)
        finally:
            self.seconds += time.perf_counter() - started


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
