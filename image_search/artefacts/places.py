"""Rows of a served view that a folder or a key prefix covers: the base build's id ranges, and
the live segment rows among them (artefacts/view.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from image_search.index.prefixes import intersect
from image_search.index.search_index import Allowed, Ranges, Rows

# A scope's segment rows become id ranges (one per run of consecutive rows) up to this many runs,
# so a folder search keeps FAISS's range selector over the base; beyond, one array of rows.
MAX_RUNS = 64
NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Place:
    """Rows of the view a folder or prefix covers: base ``ranges`` (deleted rows inside them are
    skipped by the search) and live segment rows ``extra`` (sorted)."""

    ranges: Ranges
    extra: Rows = field(default_factory=lambda: NO_ROWS)

    def __and__(self, other: Place) -> Place:
        return Place(intersect(self.ranges, other.ranges), np.intersect1d(self.extra, other.extra))

    def __or__(self, other: Place) -> Place:
        return Place(_union(self.ranges + other.ranges), np.union1d(self.extra, other.extra))

    def allowed(self) -> Allowed:
        """The rows as one restriction of a search."""
        if not len(self.extra):
            return self.ranges
        cuts = np.flatnonzero(np.diff(self.extra) != 1) + 1
        runs = [(int(run[0]), int(run[-1]) + 1) for run in np.split(self.extra, cuts)]
        if len(runs) <= MAX_RUNS:
            return self.ranges + runs
        base = [np.arange(start, end, dtype=np.int64) for start, end in self.ranges]
        return np.concatenate([*base, self.extra])


def _union(ranges: Ranges) -> Ranges:
    merged: Ranges = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
