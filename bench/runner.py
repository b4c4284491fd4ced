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

    from bench import runtimes
    from bench.model import benchmark_model
    from bench.s3server import s3_server
    from image_search.model.torch_clip import ClipEmbedder

    model = benchmark_model(tiny=sizes.tiny_model)
    embedder = ClipEmbedder(source=str(model), cache_dir=work / "models").load()
    with s3_server():
        if "engines" in sections:
            from bench import engines

            LOG.info("(7) engines: %d JPEGs, local and Ray", sizes.engine_images)
            engines.run(
                report, embedder=embedder, count=sizes.engine_images, rounds=sizes.engine_rounds
            )
        if {"build", "search", "coldstart"} & set(sections):
            from bench import both_runtimes
            from image_search.model.onnx_clip import OnnxEmbedder

            onnx = OnnxEmbedder(source=str(runtimes.exported(model)), cache_dir=work / "models")
            both_runtimes.run(
                report,
                sections=sections,
                sizes=sizes,
                embedders={"torch": embedder, "onnx": onnx.load()},
                work=work,
            )
        if "runtimes" in sections:
            from bench.serving import publish_synthetic
            from image_search.storage import s3

            LOG.info("(6) runtimes: torch against ONNX Runtime")
            runtimes.run(
                report,
                model=model,
                work=work / "runtimes",
                samples=sizes.runtime_samples,
                rounds=sizes.runtime_rounds,
                published=publish_synthetic(
                    s3.make_client(),
                    count=sizes.search_indexes[0],
                    model=embedder.source,
                    name="runtimes",
                ),
            )
