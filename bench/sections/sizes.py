"""How much each section measures, per mode: full (the default), --quick and --smoke."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    scale_count: int
    scale_queries: int
    scale_rounds: int
    build_images: int
    build_rounds: int
    search_indexes: tuple[int, ...]
    search_rounds: int
    text_requests: int
    image_requests: int
    cold_rounds: int
    duplicate_counts: tuple[int, ...]
    tiny_model: bool = False
    runtime_samples: int = 20  # encode calls per runtime and round (sections/runtimes.py)
    runtime_rounds: int = 3
    engine_images: int = 512  # sections/engines.py: the local engine against Ray
    engine_rounds: int = 3
    stage_images: int = 1_000_000  # sections/stages.py: the plan and the merge
    filter_counts: tuple[int, ...] = (100_000, 1_000_000)  # sections/filters.py
    filter_queries: int = 50
    # sections/freshness.py: images in segments on the largest search build, and uploads timed
    segment_levels: tuple[int, ...] = (0, 1_000, 10_000, 50_000)
    fresh_uploads: int = 100
    ingest_images: int = 1_000  # sections/ingest.py: the burst of uploads


SIZES = {
    "full": Sizes(1_000_000, 200, 3, 512, 2, (10_000, 100_000), 5, 10, 6, 3, (100_000, 1_000_000)),
    "quick": Sizes(
        100_000,
        100,
        3,
        96,
        2,
        (10_000, 100_000),
        3,
        8,
        4,
        2,
        (100_000,),
        runtime_samples=10,
        engine_images=96,
        engine_rounds=2,
        stage_images=100_000,
        filter_counts=(100_000,),
        fresh_uploads=30,
        ingest_images=200,
    ),
    # Every code path at toy sizes, for tests/bench/test_smoke.py; its figures mean nothing.
    "smoke": Sizes(
        3_000,
        10,
        1,
        6,
        1,
        (1_000,),
        1,
        2,
        2,
        1,
        (3_000, 21_000),
        tiny_model=True,
        runtime_samples=2,
        runtime_rounds=1,
        engine_images=16,
        engine_rounds=1,
        stage_images=3_000,
        # Past EXACT_MATCHES at 50 %: both paths run.
        filter_counts=(45_000,),
        filter_queries=5,
        segment_levels=(0, 100, 1_000),
        fresh_uploads=3,
        ingest_images=12,
    ),
}
