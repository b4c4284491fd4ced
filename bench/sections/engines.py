"""(7) Engines: the local engine against Ray with 2 workers, on the same S3 bucket in one run.

Both run the product's three stages over the same JPEGs in the moto S3 server: plan, every shard
re-embedded (``full``), merge and publish. The local engine embeds with torch's threads over both
cores; Ray runs 2 actors of 1 CPU each (Ray sets each worker's OMP_NUM_THREADS to 1), so both
have the machine's 2 cores. Ray's actors load the model once per build: that start-up is
reported apart, and the target is on the rest (a long build pays it once).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from bench.fixtures import photos
from bench.report.stats import Rounds, Row
from image_search.artefacts.location import IndexLocation
from image_search.build import ray_engine
from image_search.build.merge_stage import merge_build
from image_search.build.options import BuildOptions
from image_search.build.pipeline import run_build
from image_search.build.plan_stage import plan_build
from image_search.config import Settings
from image_search.model import images
from image_search.storage import s3

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

BUCKET = "bench-engines"
TARGET = 0.85
RAY_CPUS = 2


def run(shared: Shared) -> None:
    import ray

    report, embedder = shared.report, shared.torch
    count, rounds = shared.sizes.engine_images, shared.sizes.engine_rounds
    LOG.info("(7) engines: %d JPEGs, local and Ray", count)
    shared.s3()
    client = s3.make_client(max_connections=16)
    client.create_bucket(Bucket=BUCKET)
    photos.upload(client, bucket=BUCKET, count=count)
    # About sixteen shards, so both workers get several and the tail is short.
    settings = Settings(
        bucket=BUCKET, model=embedder.source, download_workers=8, shard_size=max(8, count // 16)
    )
    embedder.embed_images([images.decode(photos.jpeg(0), max_pixels=10**8)] * 2)  # warm-up
    local: list[float] = []
    on_ray: list[float] = []
    with_startup: list[float] = []
    startup: list[float] = []
    overhead: list[float] = []
    ray_engine.connect(settings, num_cpus=RAY_CPUS)
    try:
        for round_ in range(rounds):
            # Alternate which engine goes first, so a change in the machine's load (it is
            # shared) does not always fall on the same one.
            for engine in ("local", "ray") if round_ % 2 == 0 else ("ray", "local"):
                if engine == "local":
                    local.append(_local(settings, client=client, embedder=embedder, count=count))
                    continue
                rate, rate_with_startup, run_ = _ray(settings, client=client, count=count)
                on_ray.append(rate)
                with_startup.append(rate_with_startup)
                startup.append(run_.startup_seconds)
                overhead.append(run_.overhead_per_shard)
            LOG.info(
                "engines round %d: local %.2f img/s, ray %.2f img/s (%.2f with start-up)",
                round_,
                local[-1],
                on_ray[-1],
                with_startup[-1],
            )
    finally:
        ray.shutdown()
    group = f"engines, {count} JPEGs, {RAY_CPUS} cores"
    base = Rounds(local)
    ratio = Rounds(on_ray).median / base.median
    report.add(Row.of(group, "local engine (plan, shards, merge)", base, "img/s"))
    report.add(
        Row.of(
            group,
            "ray, 2 workers, models loaded",
            Rounds(on_ray),
            "img/s",
            floor=base.median,
            ratio=ratio,
            target=f"ratio ≥ {TARGET}",
            ok=ratio >= TARGET,
            note="plan + shards + merge, the actors' start-up excluded",
        )
    )
    report.add(Row.of(group, "ray, 2 workers, with start-up", Rounds(with_startup), "img/s"))
    report.add(
        Row.of(
            group,
            "ray actor start-up",
            Rounds(startup),
            "s",
            note="2 worker processes importing torch and loading the model; once per build",
        )
    )
    report.add(
        Row.of(
            group,
            "ray overhead per shard",
            Rounds(overhead),
            "s",
            note=f"worker time outside embed_shard, per shard of ~{settings.shard_size} images",
        )
    )


def _local(settings: Settings, *, client: s3.S3Client, embedder: Any, count: int) -> float:
    started = time.perf_counter()
    result = run_build(settings, client=client, embedder=embedder, full=True)
    assert result.published and result.count == count, result.line()
    return count / (time.perf_counter() - started)


def _ray(
    settings: Settings, *, client: s3.S3Client, count: int
) -> tuple[float, float, ray_engine.RayRun]:
    """Images/s without and with the actors' start-up, and the run's details."""
    where = IndexLocation(client, settings.bucket, settings.index_prefix)
    options = BuildOptions.of(settings)
    started = time.perf_counter()
    planned = plan_build(where, options, model=settings.model, full=True)
    planned_at = time.perf_counter()
    run_ = ray_engine.embed_on_ray(settings, planned)
    merged_at = time.perf_counter()
    result = merge_build(where, options, planned.plan)
    finished = time.perf_counter()
    assert result.published and result.count == count, result.line()
    assert run_.workers == RAY_CPUS, run_
    work = (planned_at - started) + run_.seconds + (finished - merged_at)
    return count / work, count / (finished - started), run_
