"""Key prefixes: id ranges by binary search, and the true top-k inside them for every index type.

The oracle is brute force over the vectors the index stores (decoded, for 8-bit codes), over the
rows whose key starts with the prefix, found by scanning every key.
"""

from __future__ import annotations

import numpy as np
import pytest

from image_search.artefacts.catalog import Catalog
from image_search.index import faiss_index as index
from image_search.index.prefixes import KeyOrder, intersect
from tests.support.factories import metadata_for
from tests.support.vectors import clustered

# Depth 1 to 3, a prefix cut inside a name, and names that sort around "animals/" in byte order
# ("-" and "." come before "/", "_" after it).
PREFIXES = ["a/", "b/y/", "c/z/2/", "a/x/1/", "b", "a/x/1/img-00", "animals/", "animals-x/"]


def synthetic_keys(count: int) -> list[str]:
    odd = ["animals/", "animals-x/", "animals.old/", "animals_y/", "été/"]
    keys = [
        f"{'abc'[i % 3]}/{'xyz'[i % 5 % 3]}/{i % 4}/img-{i:05d}.jpg"
        if i % 6
        else f"{odd[i % 5]}{i}.png"
        for i in range(count)
    ]
    return sorted(keys)


def rows_starting_with(keys: list[str], prefix: str) -> list[int]:
    return [row for row, key in enumerate(keys) if key.startswith(prefix)]


def ids_of(ranges: list[tuple[int, int]]) -> list[int]:
    return [row for start, end in ranges for row in range(start, end)]


def test_every_prefix_is_one_range_of_a_key_sorted_build() -> None:
    keys = synthetic_keys(600)
    order = KeyOrder(keys, [(0, len(keys))])
    for prefix in [*PREFIXES, "", "a/x/", "zzz", "a/x/1/img-00007.jpg", "animals.old/", "été/"]:
        ranges = order.ranges(prefix)
        assert ids_of(ranges) == rows_starting_with(keys, prefix), prefix
        assert len(ranges) <= 1


def metadata_of(keys: list[str], *, sorted_by: str) -> Catalog:
    """The build as the service reads it: the compact catalog of its metadata."""
    return Catalog.from_metadata(metadata_for(keys, sorted_by=sorted_by))


def test_folder_ranges_still_hold_when_sorted_by_key() -> None:
    # By key, "animals-x/…" and "animals.old/…" sort before "animals/…" and "animals_y/…" after
    # it, unlike the folder names; each folder must still be exactly one range.
    keys = synthetic_keys(600)
    metadata = metadata_of(keys, sorted_by="key")
    for folder, (start, end) in metadata.folders.items():
        assert list(range(start, end)) == rows_starting_with(keys, folder + "/"), folder
    assert sum(end - start for start, end in metadata.folders.values()) == len(keys)


def test_builds_sorted_by_folder_then_key_answer_prefixes_per_folder() -> None:
    # Builds published before key order hold (folder, key) order: a prefix spanning folders
    # ("animals" → animals/, animals-x/, animals.old/, animals_y/) is one range per folder.
    keys = sorted(synthetic_keys(600), key=lambda key: (key.split("/")[0], key))
    order = metadata_of(keys, sorted_by="folder").key_order()
    for prefix in [*PREFIXES, "animals", ""]:
        assert ids_of(order.ranges(prefix)) == rows_starting_with(keys, prefix), prefix


@pytest.mark.parametrize("sorted_by", ["key", "folder"])
def test_children_are_the_sub_folders_with_their_counts(sorted_by: str) -> None:
    keys = synthetic_keys(600)
    if sorted_by == "folder":
        keys.sort(key=lambda key: (key.split("/")[0], key))
    order = metadata_of(keys, sorted_by=sorted_by).key_order()
    for parent in ["", "a/", "b/y/", "c/z/2/", "animals/", "nothing/"]:
        expected: dict[str, int] = {}
        for key in keys:
            rest = key[len(parent) :]
            if key.startswith(parent) and "/" in rest:
                child = parent + rest.split("/")[0] + "/"
                expected[child] = expected.get(child, 0) + 1
        assert order.children(parent) == sorted(expected.items()), parent


def test_intersect_keeps_the_ids_in_both() -> None:
    assert intersect([(0, 10), (20, 30)], [(5, 25)]) == [(5, 10), (20, 25)]
    assert intersect([(0, 10)], [(10, 20)]) == []


def brute_force(stored: np.ndarray, query: np.ndarray, rows: list[int], k: int) -> list[int]:
    ids = np.array(rows)
    scores = stored[ids] @ query
    return [int(i) for i in ids[np.argsort(-scores, kind="stable")[:k]]]


# Few enough vectors that the ANN search reaches every candidate (IVF: 32 lists, all probed;
# HNSW: efSearch 128 over 256 nodes), so its top-k inside a range must equal brute force; what
# this checks is that the ranges and the id selector restrict it to the prefix and nothing else.
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf-sq8"])
def test_top_k_inside_a_prefix_equals_brute_force(kind: str) -> None:
    keys = synthetic_keys(256)
    vectors = clustered(len(keys), dim=16, seed=3)
    built = index.build(vectors, index_type=kind)
    assert built.kind == kind
    stored = np.vstack([built.vector(row) for row in range(built.ntotal)])
    order = KeyOrder(keys, [(0, len(keys))])
    for prefix in PREFIXES:
        rows = rows_starting_with(keys, prefix)
        for query in vectors[::37]:
            hits = built.search(query, k=5, allowed=order.ranges(prefix))
            assert hits.ids == brute_force(stored, query, rows, 5), (kind, prefix)


@pytest.mark.parametrize("kind", ["hnsw", "ivf-sq8"])
def test_ann_top_k_inside_a_prefix_at_full_size(kind: str) -> None:
    # With the production parameters the ANN types are approximate inside a prefix as they are
    # over the whole index: every hit is inside it, none is missing, and recall stays high.
    keys = synthetic_keys(index.IVF_MIN + 4000)
    vectors = clustered(len(keys), dim=32, seed=4)
    built = index.build(vectors, index_type=kind)
    stored = np.vstack([built.vector(row) for row in range(built.ntotal)])
    order = KeyOrder(keys, [(0, len(keys))])
    found = expected = 0
    for prefix in ["a/", "b/y/", "c/z/2/"]:
        rows = rows_starting_with(keys, prefix)
        for query in vectors[::1999]:
            hits = built.search(query, k=10, allowed=order.ranges(prefix))
            truth = brute_force(stored, query, rows, 10)
            assert len(hits.ids) == 10 and set(hits.ids) <= set(rows)
            found += len(set(hits.ids) & set(truth))
            expected += 10
    assert found / expected >= 0.9
