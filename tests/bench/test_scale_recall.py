"""ivf-pq's recall at a million 512-d vectors, the size ``auto`` first picks it for.

Small indexes cannot show what loses recall as N grows (the PQ order inside longer lists), so
this builds the benchmark's 1M clustered vectors (about two minutes): slow, not in ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fixtures import data
from bench.fixtures.data import K
from bench.report.stats import recall
from image_search.index import faiss_index

COUNT = 1_000_000


@pytest.mark.slow
def test_ivf_pq_keeps_recall_at_10_above_the_target_at_a_million(tmp_path: Path) -> None:
    vectors = data.clustered_file(COUNT, tmp_path / "vectors.npy")
    probes = data.queries(COUNT, 200)
    built = faiss_index.build(vectors, index_type=faiss_index.choose_type("auto", COUNT))
    assert built.kind == "ivf-pq"

    truth = data.exact_top_k(vectors, probes)
    found = [built.search(probe, k=K).ids for probe in probes]
    # The target is 0.95; 20 candidates a result gave 0.951, 80 give 0.969.
    assert recall(found, truth, k=K) >= 0.96
