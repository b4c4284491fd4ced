"""(5) Scale: flat, HNSW and the two IVF indexes on N synthetic clustered 512-d vectors.

For each type: build time, serialised bytes, resident memory once loaded in a fresh process,
p50 latency of the product's ``index.search`` (one query at a time, k=10), and recall@10 against
exact search. The ``auto`` choice for N carries the target. In-process figures for comparing
types; ``python -m bench scale --count N`` (bench/scalecold.py) measures one type end to end,
from a published build to a fresh process's first answer.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.fixtures import data
from bench.fixtures.data import K
from bench.report.memory import loaded_index_rss
from bench.report.stats import Report, Rounds, Row, latency_rounds, recall
from image_search.index import faiss_index as index
from image_search.index.search_index import SearchIndex

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

TYPES = ("flat", "hnsw", "ivf-sq8", "ivf-pq")
RECALL_TARGET = 0.95
LATENCY_TARGET_MS = 5.0
MEMORY_TARGET = 2**30
EXACT_QUERIES = 20


def run(shared: Shared) -> None:
    count, rounds = shared.sizes.scale_count, shared.sizes.scale_rounds
    LOG.info("(5) scale: %d vectors", count)
    started = time.perf_counter()
    vectors = data.clustered(count)
    probes = data.queries(count, shared.sizes.scale_queries)
    LOG.info("scale: %d vectors generated in %.1fs", count, time.perf_counter() - started)
    truth = data.exact_top_k(vectors, probes)
    auto = index.choose_type("auto", count)
    # The target is on the ANN type ``auto`` picks for large collections, even when a smaller
    # run is still in flat's range.
    ann = index.choose_type("auto", max(count, index.FLAT_MAX + 1))
    group = f"scale {count // 1000}k"
    for kind in TYPES:
        _measure(
            shared.report,
            group=group,
            kind=kind,
            label=f"{kind} (auto)" if kind == auto else kind,
            checked=kind == ann,
            vectors=vectors,
            probes=probes,
            truth=truth,
            rounds=rounds,
        )
        gc.collect()


def _measure(
    report: Report,
    *,
    group: str,
    kind: str,
    label: str,
    checked: bool,
    vectors: np.ndarray,
    probes: np.ndarray,
    truth: np.ndarray,
    rounds: int,
) -> None:
    LOG.info("scale: building %s over %d vectors", kind, len(vectors))
    started = time.perf_counter()
    built = index.build(vectors, index_type=kind)
    build_seconds = time.perf_counter() - started
    serialised = built.serialised().tobytes()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.bin"
        path.write_bytes(serialised)
        size = len(serialised)
        del serialised
        resident = loaded_index_rss(path)
    # ivf-pq's re-rank codes are a file of their own, mapped: queries read them.
    resident += sum(len(p) for parts in built.sidecars().values() for p in parts)
    if kind == "flat":
        # Exact by construction and ~100x slower per query at 1M: a sample is enough.
        probes, truth = probes[:EXACT_QUERIES], truth[:EXACT_QUERIES]
    recall_at_10 = recall([built.search(q, k=K).ids for q in probes], truth, k=K)
    latency = _latency(built, probes, rounds=rounds)
    del built
    fits = resident <= MEMORY_TARGET
    report.add(Row(group, f"{label} build", build_seconds, "s"))
    report.add(Row(group, f"{label} index size", size / 2**20, "MiB"))
    report.add(
        Row(
            group,
            f"{label} resident",
            resident / 2**20,
            "MiB",
            target="≤ 1024" if checked else "",
            ok=fits if checked else None,
        )
    )
    report.add(
        Row.of(
            group,
            f"{label} search p50",
            latency,
            "ms",
            target=f"≤ {LATENCY_TARGET_MS:g}" if checked else "",
            ok=latency.median <= LATENCY_TARGET_MS if checked else None,
        )
    )
    report.add(
        Row(
            group,
            f"{label} recall@10",
            recall_at_10,
            "",
            target=f"≥ {RECALL_TARGET}" if checked else "",
            ok=recall_at_10 >= RECALL_TARGET if checked else None,
        )
    )


def _latency(built: SearchIndex, probes: np.ndarray, *, rounds: int) -> Rounds:
    cursor = iter(range(10**9))
    latency, _ = latency_rounds(
        lambda: built.search(probes[next(cursor) % len(probes)], k=K),
        rounds=rounds,
        per_round=len(probes),
    )
    return latency
