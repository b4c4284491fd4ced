"""``python -m bench depth --count N --work DIR``: how deep cursors stay exact on each IVF kind.

Builds the product's index of each kind over N clustered vectors (bench.fixtures.data), then walks
held-out probes page by page as ``/query`` does (``index.search`` to the page's depth, cut after
the previous page's last result by ``serve.cursors``), and compares the ranks walked with the
exact ranking: recall of each band of ranks (the share of the true ranks a..b found at ranks
a..b) and the search time of the first and the last page. One JSON line a kind.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.fixtures import data

BANDS = ((1, 100), (101, 200), (201, 500), (501, 1000), (101, 1000))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench depth", description=__doc__)
    parser.add_argument("--count", type=int, required=True, help="vectors to index")
    parser.add_argument("--kinds", default="ivf-sq8,ivf-pq", help="comma-separated index kinds")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--page", type=int, default=100, help="results a page")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the vectors")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    from image_search.index import faiss_index
    from image_search.serve.cursors import MAX_DEPTH

    args = parse(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.work / "depth-vectors.npy"
    try:
        vectors = data.clustered_file(args.count, path)
        probes = data.queries(args.count, args.queries)
        truth = exact_ranking(vectors, probes, depth=MAX_DEPTH)
        for kind in args.kinds.split(","):
            built = faiss_index.build(vectors, index_type=kind)
            walks = [walk(built, probe, page=args.page, depth=MAX_DEPTH) for probe in probes]
            row: dict[str, Any] = {"count": args.count, "kind": kind, "page": args.page}
            for first, last in BANDS:
                found = [
                    len(set(rows[first - 1 : last]) & set(true[first - 1 : last]))
                    / (last - first + 1)
                    for (rows, _), true in zip(walks, truth, strict=True)
                ]
                row[f"recall_{first}_{last}"] = round(statistics.fmean(found), 4)
            row["first_page_p50_ms"] = _p50([times[0] for _, times in walks])
            row["last_page_p50_ms"] = _p50([times[-1] for _, times in walks])
            print(json.dumps(row), flush=True)
    finally:
        path.unlink(missing_ok=True)
    return 0


def walk(index: Any, probe: np.ndarray, *, page: int, depth: int) -> tuple[list[int], list[float]]:
    """The rows of every page to ``depth``, as ``/query``'s cursors walk them, and each page's
    search time."""
    from image_search.serve import cursors

    rows: list[int] = []
    times: list[float] = []
    after = None
    while len(rows) < depth:
        started = time.perf_counter()
        found = index.search(probe, k=len(rows) + page + 1)
        times.append(time.perf_counter() - started)
        pairs, _ = cursors.page(found.ids, found.scores, after=after, exclude=set(), k=page)
        if not pairs:
            break
        rows += [row for row, _ in pairs]
        after = cursors.After("bench", len(rows), *pairs[-1])
    return rows[:depth], times


def exact_ranking(vectors: np.ndarray, probes: np.ndarray, *, depth: int) -> list[list[int]]:
    """Each probe's true top ``depth`` rows, best first."""
    scores = probes @ np.asarray(vectors).T
    top = np.argpartition(-scores, depth, axis=1)[:, :depth]
    ordered = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1)), axis=1)
    return [list(map(int, row)) for row in ordered]


def _p50(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 2)
