"""Runs the chosen sections, sharing one S3 server, one model and the published indexes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bench.stats import Report

if TYPE_CHECKING:
    from bench.__main__ import Sizes

LOG = logging.getLogger(__name__)


def run_sections(report: Report, *, sections: list[str], sizes: Sizes, work: Path) -> None:
    if "scale" in sections:
        from bench import scale

        LOG.info("(5) scale: %d vectors", sizes.scale_count)
        scale.run(
            report,
            count=sizes.scale_count,
            queries=sizes.scale_queries,
            rounds=sizes.scale_rounds,
        )
    if "duplicates" in sections:
        from bench import duplicates

        LOG.info("(6) near-duplicate pass: %s vectors", sizes.duplicate_counts)
        duplicates.run(report, counts=sizes.duplicate_counts)
    if "stages" in sections:
        from bench import stages
        from bench.s3server import s3_server

        LOG.info("(8) build stages: %d images", sizes.stage_images)
        with s3_server():
            stages.run(report, count=sizes.stage_images)
    rest = [name for name in sections if name not in ("scale", "duplicates", "stages")]
    if not rest:
        return

    from bench import coldstart, latency, runtimes, throughput
    from bench.model import benchmark_model
    from bench.s3server import s3_server
    from bench.serving import publish_synthetic
    from image_search.model.embedder import ClipEmbedder
    from image_search.storage import s3

    model = benchmark_model(tiny=sizes.tiny_model)
    embedder = ClipEmbedder(source=str(model), cache_dir=work / "models").load()
    with s3_server():
        if "build" in sections:
            LOG.info("(3) build throughput: %d JPEGs", sizes.build_images)
            throughput.run(
                report, embedder=embedder, count=sizes.build_images, rounds=sizes.build_rounds
            )
        if "engines" in sections:
            from bench import engines

            LOG.info("(7) engines: %d JPEGs, local and Ray", sizes.engine_images)
            engines.run(
                report, embedder=embedder, count=sizes.engine_images, rounds=sizes.engine_rounds
            )
        if not {"search", "coldstart", "runtimes"} & set(sections):
            return
        client = s3.make_client()
        # The runtimes section alone needs one index (the smallest) for its server cold start.
        serving = {"search", "coldstart"} & set(sections)
        counts = sizes.search_indexes if serving else sizes.search_indexes[:1]
        published = [
            publish_synthetic(client, count=count, model=embedder.source) for count in counts
        ]
        if "search" in sections:
            for index in published:
                LOG.info("(1, 2) search latency: %d vectors", index.count)
                latency.run(
                    report,
                    embedder=embedder,
                    published=index,
                    cache=work / f"serve-{index.count}",
                    rounds=sizes.search_rounds,
                    text_requests=sizes.text_requests,
                    image_requests=sizes.image_requests if index is published[-1] else 0,
                )
        if "coldstart" in sections:
            LOG.info("(4) cold start")
            coldstart.run(
                report, embedder=embedder, published=published[-1], rounds=sizes.cold_rounds
            )
        if "runtimes" in sections:
            LOG.info("(6) runtimes: torch against ONNX Runtime")
            runtimes.run(
                report,
                model=model,
                work=work / "runtimes",
                samples=sizes.runtime_samples,
                rounds=sizes.runtime_rounds,
                published=published[0],
            )
