"""``python -m bench [--quick | --smoke] [--check] [--only ...]``: see the README's Performance.

``python -m bench scale --count N [--index-type T] [--json PATH]``: one cold start over N images
(bench/scalecold.py, docs/scale.md).

``python -m bench pqtune --count N --work DIR``: ivf-pq's recall and latency for each search
setting (bench/pqtune.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SECTIONS = ("scale", "duplicates", "build", "search", "coldstart", "runtimes", "engines", "stages")


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
    runtime_samples: int = 20  # encode calls per runtime and round (bench.runtimes)
    runtime_rounds: int = 3
    engine_images: int = 512  # bench.engines: the local engine against Ray
    engine_rounds: int = 3
    stage_images: int = 1_000_000  # bench.stages: the plan and the merge


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
    ),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes; checks the targets")
    size.add_argument("--smoke", action="store_true", help="toy sizes: exercise the code only")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma list of " + "/".join(SECTIONS)
    )
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for this run and its servers")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["scale"]:
        from bench import scalecold

        return scalecold.main(argv[1:])
    if argv[:1] == ["pqtune"]:
        from bench import pqtune

        return pqtune.main(argv[1:])
    args = parse(argv)
    if args.threads:
        # Before torch and faiss are imported: both size their OpenMP pools from it.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"unknown section(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("botocore", "httpx", "faiss.loader", "image_search"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from bench import table
    from bench.runner import run_sections
    from bench.stats import Report, machine_info

    started = time.perf_counter()
    report = Report(mode if args.only == ",".join(SECTIONS) else f"{mode}-{'+'.join(sections)}")
    report.machine = machine_info()
    try:
        with tempfile.TemporaryDirectory(prefix="image-search-bench-") as work:
            run_sections(report, sections=sections, sizes=SIZES[mode], work=Path(work))
    except BaseException:
        # What was measured before the failure is kept, saved as mode "…-incomplete".
        report.mode += "-incomplete"
        print(f"\npartial results: {table.save(report)}", file=sys.stderr)
        raise
    report.machine["load_average_at_end"] = os.getloadavg()
    print()
    print(table.plain(report))
    path = table.save(report)
    print(f"\nresults: {path}")
    print(table.summary(report, time.perf_counter() - started))
    checking = args.check or args.quick
    return 1 if checking and report.missed() else 0


if __name__ == "__main__":
    sys.exit(main())
