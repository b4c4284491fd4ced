"""(6) The build's near-duplicate pass on N synthetic clustered 512-d vectors with planted copies.

1% of the vectors are replaced by copies of others at cosines spread over [score, 1): the pass
must put each copy in its original's group. Reported: seconds, peak resident memory during the
pass (and its growth over the vectors and index already held, which a build holds anyway), the
groups found and the share of planted copies found. Above ``EXACT_MAX`` the IVF index is built
first, as the build does, and its build time is not counted.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from bench.fixtures import data
from bench.report.memory import peak_rss_bytes, reset_peak, rss_bytes
from bench.report.stats import Row
from image_search.index import duplicates, faiss_index
from image_search.model.vectors import normalise

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

SCORE = 0.95  # the default IMAGE_SEARCH_DUPLICATE_SCORE
PLANTED = 0.01
MIB = 2**20


def run(shared: Shared) -> None:
    report, counts = shared.report, shared.sizes.duplicate_counts
    LOG.info("(6) near-duplicate pass: %s vectors", counts)
    for count in counts:
        vectors, pairs = _with_copies(count)
        index = None
        if count > duplicates.EXACT_MAX:
            index = faiss_index.build(vectors, index_type=faiss_index.choose_type("auto", count))
        held = rss_bytes()
        if not reset_peak():
            LOG.warning("cannot reset the peak RSS; the figure includes earlier peaks")
        started = time.perf_counter()
        groups = duplicates.find_groups(vectors, min_score=SCORE, index=index)
        seconds = time.perf_counter() - started
        peak = peak_rss_bytes()
        found = _found(groups, pairs)
        LOG.info(
            "duplicates %d: %.1f s, %d groups, %.4f of copies", count, seconds, len(groups), found
        )
        group = f"duplicates {count // 1000}k (cosine ≥ {SCORE})"
        report.add(Row(group, "pass", seconds, "s"))
        report.add(Row(group, "peak resident during the pass", peak / MIB, "MiB"))
        report.add(Row(group, "growth over vectors + index", max(0, peak - held) / MIB, "MiB"))
        report.add(Row(group, "groups", float(len(groups)), ""))
        report.add(Row(group, "planted copies found", found, ""))
        del vectors, index, groups
        gc.collect()


def _with_copies(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered vectors whose last 1% are copies of earlier rows; (original, copy) pairs."""
    vectors = data.clustered(count)
    rng = np.random.default_rng(3)
    copies = max(1, int(count * PLANTED))
    originals = rng.choice(count - copies, size=copies, replace=False)
    targets = np.arange(count - copies, count)
    noise = rng.standard_normal((copies, vectors.shape[1]), dtype=np.float32)
    base = vectors[originals]
    noise -= np.sum(noise * base, axis=1, keepdims=True) * base  # orthogonal to the original
    noise = normalise(noise)
    cosine = rng.uniform(SCORE + 0.001, 1.0, size=(copies, 1)).astype(np.float32)
    vectors[targets] = normalise(cosine * base + np.sqrt(1 - cosine**2) * noise)
    return vectors, np.stack([originals, targets], axis=1)


def _found(groups: list[duplicates.Group], pairs: np.ndarray) -> float:
    group_of = {row: at for at, group in enumerate(groups) for row in group.rows}
    hits = sum(1 for a, b in pairs if a in group_of and group_of.get(int(b)) == group_of[int(a)])
    return hits / len(pairs)
