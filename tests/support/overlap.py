"""A brute-force oracle for the int8 gate's top-10 overlap: sorted Python lists, no numpy tricks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top10_overlap(
    queries_a: Sequence[np.ndarray],
    corpus_a: Sequence[np.ndarray],
    queries_b: Sequence[np.ndarray],
    corpus_b: Sequence[np.ndarray],
    *,
    exclude_self: bool,
) -> float:
    shares = []
    for q, (qa, qb) in enumerate(zip(queries_a, queries_b, strict=True)):
        candidates = [c for c in range(len(corpus_a)) if not (exclude_self and c == q)]
        k = min(10, len(candidates))
        top_a = sorted(candidates, key=lambda c: -float(qa @ corpus_a[c]))[:k]
        top_b = sorted(candidates, key=lambda c: -float(qb @ corpus_b[c]))[:k]
        shares.append(len(set(top_a) & set(top_b)) / k)
    return sum(shares) / len(shares)
