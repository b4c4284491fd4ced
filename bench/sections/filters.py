"""(12) Filters on photo fields: a date range keeping 1 %, 10 % and 50 % of N images.

Each image gets a date taken at random over 100 days (independent of its vector, like a date is
of what a photo shows), and the filter keeps the first 1, 10 or 50 days. Timed as the service
runs it, in this process: the matching rows from the photo columns (``PhotoFilter.matching``), then
``serve.filters.search`` (up to ``EXACT_MATCHES`` rows scored exactly, more through the index
with a row selector). Recall@10 against brute force over the float vectors of the matching rows;
the floor is the same index's unfiltered search.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from bench.fixtures import data
from bench.fixtures.data import K
from bench.report.stats import Rounds, Row, percentile, recall
from image_search.artefacts.photos import PhotoColumns, empty
from image_search.index import faiss_index
from image_search.index.search_index import SearchIndex
from image_search.serve import filters
from image_search.serve.filters import PhotoFilter

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

KINDS = ("flat", "ivf-sq8", "ivf-pq")
DAYS = 100
SHARES = (1, 10, 50)  # percent of the images the filter keeps: its first days
DAY = 86_400
CHUNK = 100_000


def run(shared: Shared) -> None:
    sizes = shared.sizes
    for count in sizes.filter_counts:
        LOG.info("(12) filters: %d vectors", count)
        vectors = data.clustered(count)
        probes = data.queries(count, sizes.filter_queries)
        columns = dated(count)
        chosen = {share: PhotoFilter(taken_to=share * DAY - 1) for share in SHARES}
        truths = {
            share: exact_among(vectors, probes, keep=columns.array["taken"] <= f.taken_to)  # type: ignore[operator]
            for share, f in chosen.items()
        }
        for kind in KINDS:
            LOG.info("filters: building %s over %d vectors", kind, count)
            built = faiss_index.build(vectors, index_type=kind)
            group = f"filters {count // 1000}k {kind}"
            floor = _plain(built, probes, rounds=sizes.scale_rounds)
            shared.report.add(Row.of(group, "no filter: search p50", floor, "ms"))
            for share, asked in chosen.items():
                _measure(
                    shared,
                    group=group,
                    share=share,
                    index=built,
                    probes=probes,
                    truth=truths[share],
                    columns=columns,
                    chosen=asked,
                    floor=floor.median,
                )
            del built
            gc.collect()


def dated(count: int) -> PhotoColumns:
    """Photo columns of ``count`` images, each taken on one of ``DAYS`` days at random."""
    array = empty(count)
    days = np.random.default_rng(3).integers(0, DAYS, count)
    array["taken"] = days * DAY + DAY // 2
    array["source"] = 1
    return PhotoColumns(array, ())


def exact_among(vectors: np.ndarray, probes: np.ndarray, *, keep: np.ndarray) -> list[list[int]]:
    """Each probe's true top K among the rows ``keep`` marks, a chunk of rows at a time."""
    best = np.full((len(probes), K), -np.inf, dtype=np.float32)
    ids = np.zeros((len(probes), K), dtype=np.int64)
    for start in range(0, len(vectors), CHUNK):
        scores = probes @ np.asarray(vectors[start : start + CHUNK]).T
        scores[:, ~keep[start : start + CHUNK]] = -np.inf
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        merged, merged_ids = np.hstack([best, scores]), np.hstack([ids, rows])
        top = np.argsort(-merged, axis=1, kind="stable")[:, :K]
        best = np.take_along_axis(merged, top, axis=1)
        ids = np.take_along_axis(merged_ids, top, axis=1)
    return [list(map(int, row)) for row in ids]


def _plain(index: SearchIndex, probes: np.ndarray, *, rounds: int) -> Rounds:
    per: list[float] = []
    for _ in range(rounds):
        samples = []
        for probe in probes:
            started = time.perf_counter()
            index.search(probe, k=K)
            samples.append((time.perf_counter() - started) * 1000)
        per.append(percentile(samples, 50))
    return Rounds(per)


def _measure(
    shared: Shared,
    *,
    group: str,
    share: int,
    index: SearchIndex,
    probes: np.ndarray,
    truth: list[list[int]],
    columns: PhotoColumns,
    chosen: PhotoFilter,
    floor: float,
) -> None:
    totals: list[float] = []
    matching: list[float] = []
    found: list[list[int]] = []
    kept = 0
    for _ in range(shared.sizes.scale_rounds):
        samples, rows_ms = [], []
        found = []
        for probe in probes:
            started = time.perf_counter()
            rows = chosen.matching(columns, None)
            filtered = time.perf_counter()
            hits = filters.search(index, probe, k=K, allowed=rows)
            samples.append((time.perf_counter() - started) * 1000)
            rows_ms.append((filtered - started) * 1000)
            found.append(hits.ids)
            kept = len(rows)
        totals.append(percentile(samples, 50))
        matching.append(percentile(rows_ms, 50))
    path = "exact" if kept <= filters.EXACT_MATCHES else "index + selector"
    name = f"{share}% kept ({kept:,} rows, {path})"
    report = shared.report
    report.add(Row.of(group, f"{name}: matching rows p50", Rounds(matching), "ms"))
    total = Rounds(totals)
    ratio = total.median / floor
    report.add(Row.of(group, f"{name}: p50", total, "ms", floor=floor, ratio=ratio))
    report.add(Row(group, f"{name}: recall@10", recall(found, truth, k=K), ""))
