"""``python -m bench pqtune --count N``: ivf-pq's recall and latency for each search setting.

Builds the product's ``ivf-pq`` over N clustered vectors (bench.fixtures.data), then searches the
same held-out probes through ``index.search`` once per (nprobe, candidates a result) pair and prints
one JSON line each: recall@10 against exact search, p50 of the whole search and of its PQ scan. The
service's settings (``PQ_NPROBE``, ``RERANK_FACTOR``) were chosen from these rows (docs/scale.md).
Everything runs in this process with the re-rank codes in memory: no S3, no cold start.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.fixtures import data
from bench.fixtures.data import K
from bench.report.stats import recall


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench pqtune", description=__doc__)
    parser.add_argument("--count", type=int, required=True, help="vectors to index")
    parser.add_argument("--nprobe", default="8,12,16", help="comma-separated lists to probe")
    parser.add_argument("--factor", default="20,40,80", help="comma-separated candidates a result")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the vectors")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    for row in sweep(args):
        print(json.dumps(row), flush=True)
    return 0


def sweep(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    import faiss

    from image_search.index import faiss_index, ivf_pq

    args.work.mkdir(parents=True, exist_ok=True)
    vectors = data.clustered_file(args.count, args.work / "pqtune-vectors.npy")
    probes = data.queries(args.count, args.queries)
    truth = data.exact_top_k(vectors, probes)
    built = cast(ivf_pq.IvfPqIndex, faiss_index.build(vectors, index_type="ivf-pq"))
    assert built.kind == "ivf-pq"
    saved = ivf_pq.PQ_NPROBE, ivf_pq.RERANK_FACTOR
    try:
        for nprobe in _ints(args.nprobe):
            for factor in _ints(args.factor):
                ivf_pq.PQ_NPROBE, ivf_pq.RERANK_FACTOR = nprobe, factor
                found, whole, scan = [], [], []
                params = faiss.SearchParametersIVF(nprobe=nprobe)  # type: ignore[call-arg]  # SWIG kwargs
                for probe in probes:
                    started = time.perf_counter()
                    found.append(built.search(probe, k=K).ids)
                    whole.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    built.faiss.search(probe.reshape(1, -1), K * factor, params=params)
                    scan.append(time.perf_counter() - started)
                yield {
                    "count": args.count,
                    "nprobe": nprobe,
                    "candidates_per_result": factor,
                    "recall_at_10": round(recall(found, truth, k=K), 4),
                    "search_p50_ms": round(float(np.median(whole)) * 1000, 3),
                    "pq_scan_p50_ms": round(float(np.median(scan)) * 1000, 3),
                }
    finally:
        ivf_pq.PQ_NPROBE, ivf_pq.RERANK_FACTOR = saved
        (args.work / "pqtune-vectors.npy").unlink(missing_ok=True)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]
