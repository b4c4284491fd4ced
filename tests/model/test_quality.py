"""The int8 gate's arithmetic: top-10 overlap against a brute-force oracle, prompts from folders."""

from __future__ import annotations

import numpy as np
import pytest

from image_search.model.quality import Overlap, mean_overlap, prompts
from image_search.model.vectors import Vectors, normalise
from tests.support.overlap import top10_overlap


def unit_vectors(count: int, dim: int, *, seed: int) -> Vectors:
    return normalise(np.random.default_rng(seed).normal(size=(count, dim)))


def test_overlap_matches_the_oracle() -> None:
    rng = np.random.default_rng(0)
    corpus = unit_vectors(40, 8, seed=1)
    noisy = corpus + rng.normal(scale=0.15, size=corpus.shape).astype(np.float32)
    queries = unit_vectors(7, 8, seed=2)
    for exclude_self, (qa, qb) in ((True, (corpus, noisy)), (False, (queries, queries))):
        got = mean_overlap(qa, corpus, qb, noisy, exclude_self=exclude_self)
        assert got == pytest.approx(top10_overlap(qa, corpus, qb, noisy, exclude_self=exclude_self))
    assert 0 < mean_overlap(corpus, corpus, noisy, noisy, exclude_self=True) < 1
    assert mean_overlap(corpus, corpus, corpus, corpus, exclude_self=True) == 1.0


def test_fewer_candidates_than_ten_compare_all_of_them() -> None:
    corpus = unit_vectors(6, 4, seed=3)
    assert mean_overlap(corpus, corpus, corpus[::-1], corpus[::-1], exclude_self=True) == 1.0


def test_prompts_come_from_the_folders_below_the_prefix() -> None:
    keys = ["photos/x.jpg", "photos/beach_2019/a.jpg", "photos/trips/Cats/b.png", "photos/Cats/c"]
    assert prompts(keys, prefix="photos/") == ["a photo of Cats", "a photo of beach 2019"]


def test_the_gate_needs_every_measured_figure_at_the_threshold() -> None:
    assert Overlap(image=0.95, text=None).passes(0.9)
    assert not Overlap(image=0.95, text=0.89).passes(0.9)
    assert Overlap(image=0.9, text=0.9).line() == "overlap@10 image=0.90 text=0.90"
    assert Overlap(image=0.971, text=None).line() == "overlap@10 image=0.97 text=n/a"
