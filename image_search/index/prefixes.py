"""Key prefixes as id ranges, found by binary search over the keys in id order.

A build sorted by key keeps the keys sharing any prefix (``animals/``, ``animals/cats/``,
``2024/06/1``) in one contiguous run of ids, so a prefix search is FAISS restricted to one id
range, at any depth and with no memory beyond the keys already held. Builds published before
key order (``sorted_by: "folder"``) are sorted by (folder, key): each folder is a sorted run of
its own, so a prefix is one range inside each folder it touches.

Python compares strings by code point, which is the byte order of their UTF-8 encoding: the order
S3 lists keys in.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from image_search.index.search_index import Ranges


class KeyOrder:
    """Prefix lookups over ``keys``, made of sorted ``runs`` of ids."""

    def __init__(self, keys: Sequence[str], runs: Ranges) -> None:
        self.keys = keys
        self.runs = runs

    def ranges(self, prefix: str) -> Ranges:
        """The id ranges of the keys starting with ``prefix``, adjacent ranges merged."""
        found: Ranges = []
        for run in self.runs:
            start, end = self._within(run, prefix)
            if start == end:
                continue
            if found and found[-1][1] == start:
                found[-1] = (found[-1][0], end)
            else:
                found.append((start, end))
        return found

    def children(self, parent: str) -> list[tuple[str, int]]:
        """The sub-folders directly under ``parent`` (``""`` or ending in ``/``), each as
        ``(prefix ending in "/", number of keys under it)``, in key order.

        Jumps from one sub-folder to the next by binary search; only keys stored directly under
        ``parent`` (files, not folders) are stepped over one by one.
        """
        counts: dict[str, int] = {}
        depth = len(parent)
        for run in self.runs:
            row, end = self._within(run, parent)
            while row < end:
                head, slash, _ = self.keys[row][depth:].partition("/")
                if not slash:
                    row += 1
                    continue
                child = f"{parent}{head}/"
                _, child_end = self._within((row, end), child)
                counts[child] = counts.get(child, 0) + child_end - row
                row = child_end
        return sorted(counts.items())

    def _within(self, run: tuple[int, int], prefix: str) -> tuple[int, int]:
        # Cutting every key to the prefix's length keeps them sorted, so the keys that start
        # with it are exactly the run between the two bisection points.
        if not prefix:
            return run
        size = len(prefix)
        start, end = run

        def cut(key: str) -> str:
            return key[:size]

        first = bisect_left(self.keys, prefix, start, end, key=cut)
        return first, bisect_right(self.keys, prefix, first, end, key=cut)


def intersect(left: Ranges, right: Ranges) -> Ranges:
    """The ids in both lists of ranges (each sorted and non-overlapping)."""
    both: Ranges = []
    for a_start, a_end in left:
        for b_start, b_end in right:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start < end:
                both.append((start, end))
    return sorted(both)
