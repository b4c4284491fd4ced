"""``python -m bench [--quick | --smoke] [--check] [--only ...]``: see the README's Performance.

``python -m bench scale --count N [--index-type T] [--json PATH]``: one cold start over N images
(bench/scalecold.py, docs/scale.md).

``python -m bench pqtune --count N --work DIR``: ivf-pq's recall and latency for each search
setting (bench/pqtune.py).

``python -m bench depth --count N --work DIR``: recall of cursors' deep pages on the IVF kinds
(bench/depth.py).

``python -m bench integrity --count N --work DIR``: what checking a compact catalog at load costs
(bench/integrity.py).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.sections import SECTIONS
from bench.sections.sizes import SIZES

# The commands beside the sections' run: ``python -m bench <name> …`` runs ``<module>.main``.
COMMANDS = {
    "scale": "bench.scalecold",
    "pqtune": "bench.pqtune",
    "depth": "bench.depth",
    "integrity": "bench.integrity",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes; checks the targets")
    size.add_argument("--smoke", action="store_true", help="toy sizes: exercise the code only")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    about = "; ".join(f"{name}: {section.about}" for name, section in SECTIONS.items())
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of: {about}")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for this run and its servers")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in COMMANDS:
        command: int = importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
        return command
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

    from bench.report import table
    from bench.report.stats import Report, machine_info
    from bench.sections.shared import Shared

    started = time.perf_counter()
    report = Report(mode if args.only == ",".join(SECTIONS) else f"{mode}-{'+'.join(sections)}")
    report.machine = machine_info()
    try:
        with tempfile.TemporaryDirectory(prefix="image-search-bench-") as work:
            with Shared(report, sizes=SIZES[mode], work=Path(work)) as shared:
                for section in SECTIONS.values():
                    if section.name in sections:
                        section.run(shared)
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
