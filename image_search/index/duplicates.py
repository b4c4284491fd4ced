"""Near-duplicate groups: every pair of vectors at or above a cosine score, joined into groups.

A group is a connected component of the graph whose edges are those pairs. Each group keeps a
maximum spanning tree of its edges: cutting the tree's edges below a higher score gives exactly
the groups that score would have found (single linkage), and every image's best match in the group
is one of its tree edges. So groups found once at the build's score answer any higher ``min_score``
later, from n - 1 edges per group instead of every pair.

Pairs come from FAISS range searches over flat (exact) indexes, in batches so the results held at
once stay bounded. Up to ``EXACT_MAX`` vectors every vector is searched against all the others.
Above it, n² dot products would take hours, so the vectors are first split into buckets by their
``ASSIGN`` nearest coarse centroids (the IVF index's own, when the build made one) and each bucket
is searched against itself: two near-identical vectors share their nearest centroid, or at worst
the second nearest. About 2·√n buckets of about √n vectors each (every vector sits in two) make
it about 2·n·√n dot products instead of n². Scores are FAISS's float inner products, exact.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

import faiss
import numpy as np

from image_search.index.search_index import SearchIndex
from image_search.model.vectors import Vectors

LOG = logging.getLogger(__name__)

# An exact scan costs n² dot products (bench/duplicates.py measures the pass).
EXACT_MAX = 20_000
ASSIGN = 2
# Results of one batch of range searches held at once (~12 bytes each) when every query matches
# every vector of its bucket; real batches hold a few pairs. ``MIN_BATCH`` overrides it.
PAIR_BUDGET = 8_000_000
MIN_BATCH = 512
# FAISS keeps inner products strictly above the radius: search a little below the score, then
# keep what reaches it.
RADIUS_MARGIN = 1e-3
# Neighbours kept per image: a thousand copies of one picture would otherwise keep a million
# pairs. The spanning tree needs far fewer to join them.
MAX_NEIGHBOURS = 32

Edge = tuple[int, int, float]  # positions in the group's rows, cosine score


@dataclass(frozen=True)
class Group:
    rows: list[int]  # ids into the index, ascending
    edges: list[Edge]  # a maximum spanning tree: (position, position, score)

    @property
    def score(self) -> float:
        """The best score between two members."""
        return max(score for _, _, score in self.edges)

    def best(self) -> list[float]:
        """Each member's best score to another member."""
        found = [-1.0] * len(self.rows)
        for a, b, score in self.edges:
            found[a] = max(found[a], score)
            found[b] = max(found[b], score)
        return found


def find_groups(
    vectors: Vectors, *, min_score: float, index: SearchIndex | None = None
) -> list[Group]:
    """Groups of near-identical ``vectors`` (unit rows): pairs with cosine ≥ ``min_score``.

    ``index`` (the build's FAISS index over the same rows) is reused when it is an IVF index and
    there are more than ``EXACT_MAX`` vectors; otherwise one is made for the pass.
    """
    first, second, scores = _pairs(vectors, min_score=min_score, index=index)
    return _spanning_groups(first, second, scores)


def split(group: Group, *, min_score: float) -> list[Group]:
    """The groups ``group`` falls into when only pairs scoring ``min_score`` or more count."""
    kept = [edge for edge in group.edges if edge[2] >= min_score]
    if len(kept) == len(group.edges):
        return [group]
    first = np.array([group.rows[a] for a, _, _ in kept], dtype=np.int64)
    second = np.array([group.rows[b] for _, b, _ in kept], dtype=np.int64)
    scores = np.array([score for _, _, score in kept], dtype=np.float32)
    return _spanning_groups(first, second, scores)


def without(group: Group, rows: Collection[int]) -> list[Group]:
    """The groups ``group`` falls into when its members in ``rows`` are gone (deleted images):
    its tree's edges between the others. Members the tree joined only through a removed one
    part, though another pair may have joined them: the next build finds the groups anew."""
    gone = {at for at, row in enumerate(group.rows) if row in rows}
    if not gone:
        return [group]
    kept = [edge for edge in group.edges if edge[0] not in gone and edge[1] not in gone]
    first = np.array([group.rows[a] for a, _, _ in kept], dtype=np.int64)
    second = np.array([group.rows[b] for _, b, _ in kept], dtype=np.int64)
    scores = np.array([score for _, _, score in kept], dtype=np.float32)
    return _spanning_groups(first, second, scores)


def _pairs(
    vectors: Vectors, *, min_score: float, index: SearchIndex | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (first < second) scoring at least ``min_score``, with its score."""
    count = len(vectors)
    parts = [
        _bucket_pairs(vectors, rows, min_score=min_score)
        for rows in _buckets(vectors, index)
        if len(rows) > 1
    ]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    first, second, scores = (np.concatenate(column) for column in zip(*parts, strict=True))
    # Two vectors sharing both their nearest centroids meet in two buckets: keep the pair once.
    _, once = np.unique(first * count + second, return_index=True)
    return first[once], second[once], scores[once]


def _buckets(vectors: Vectors, index: SearchIndex | None) -> list[np.ndarray]:
    """Row ids to search among themselves: all of them, or one bucket per coarse centroid."""
    count, dim = vectors.shape
    if count <= EXACT_MAX:
        return [np.arange(count)]
    quantizer = None if index is None else index.coarse_quantizer()
    if quantizer is None:
        lists = max(16, int(2 * np.sqrt(count)))
        kmeans = faiss.Kmeans(dim, lists, niter=10, spherical=True, seed=0)
        sample = np.random.default_rng(0).choice(count, size=min(count, lists * 50), replace=False)
        kmeans.train(vectors[np.sort(sample)])
        quantizer = kmeans.index
    _, nearest = quantizer.search(vectors, ASSIGN)
    flat = nearest.ravel()
    order = np.argsort(flat, kind="stable")
    cuts = np.flatnonzero(np.diff(flat[order])) + 1
    return [np.sort(part // ASSIGN) for part in np.split(order, cuts)]


def _bucket_pairs(
    vectors: Vectors, rows: np.ndarray, *, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    members = np.ascontiguousarray(vectors[rows])
    exact = faiss.IndexFlatIP(members.shape[1])
    exact.add(members)
    # FAISS scans the bucket once per batch of queries: under ~512 queries a batch it falls back
    # to a path 10-20x slower per query (measured, faiss 1.15), so batches stay at least that big.
    batch = min(len(rows), max(MIN_BATCH, PAIR_BUDGET // len(rows)))
    parts = []
    for start in range(0, len(rows), batch):
        queries = members[start : start + batch]
        lims, scores, found = exact.range_search(queries, min_score - RADIUS_MARGIN)
        sources = start + np.repeat(np.arange(len(queries)), np.diff(lims).astype(np.int64))
        parts.append(_kept(rows[sources], rows[found], scores, min_score=min_score))
    first, second, scores = (np.concatenate(column) for column in zip(*parts, strict=True))
    return first, second, scores


def _kept(
    sources: np.ndarray, targets: np.ndarray, scores: np.ndarray, *, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs scoring ``min_score`` or more, at most ``MAX_NEIGHBOURS`` per source."""
    good = (sources != targets) & (scores >= min_score)
    sources, targets, scores = sources[good], targets[good], scores[good]
    order = np.lexsort((-scores, sources))
    sources, targets, scores = sources[order], targets[order], scores[order]
    starts = np.searchsorted(sources, sources, side="left")
    near = np.arange(len(sources)) - starts < MAX_NEIGHBOURS
    sources, targets, scores = sources[near], targets[near], scores[near]
    return np.minimum(sources, targets), np.maximum(sources, targets), scores.astype(np.float32)


def _spanning_groups(first: np.ndarray, second: np.ndarray, scores: np.ndarray) -> list[Group]:
    """Kruskal's algorithm, best pairs first: the groups and a maximum spanning tree of each."""
    parent: dict[int, int] = {}

    def root(row: int) -> int:
        parent.setdefault(row, row)
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    tree: list[tuple[int, int, float]] = []
    for at in np.argsort(-scores, kind="stable"):
        a, b = int(first[at]), int(second[at])
        root_a, root_b = root(a), root(b)
        if root_a != root_b:
            parent[root_b] = root_a
            tree.append((a, b, round(float(scores[at]), 6)))
    members: dict[int, list[int]] = {}
    for row in parent:
        members.setdefault(root(row), []).append(row)
    edges: dict[int, list[tuple[int, int, float]]] = {}
    for a, b, score in tree:
        edges.setdefault(root(a), []).append((a, b, score))
    groups = []
    for top, rows in members.items():
        rows.sort()
        position = {row: at for at, row in enumerate(rows)}
        group_edges = [(position[a], position[b], score) for a, b, score in edges[top]]
        groups.append(Group(rows=rows, edges=group_edges))
    return sorted(groups, key=lambda group: group.rows[0])
