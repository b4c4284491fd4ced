"""The compact catalog against the metadata it is made from: every row, every key, every folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts.catalog import Catalog, Entry
from image_search.artefacts.manifest import KEY_ORDER_FILE
from tests.support.factories import metadata_for

# Row order is folder order, which is not key order: "a-b/…" sorts before "a/…" as a key ('-' <
# '/') but after it as a folder ("a" < "a-b"). Non-ASCII keys sort by code point.
KEYS = [
    "a/z.jpg",
    "a/ä.jpg",
    "a/🙂 smile.png",
    "a-b/1.jpg",
    "a-b/2.jpg",
    "zeta/deep/nested/key with spaces.webp",
    "zeta/日本.png",
]


def published(tmp_path: Path, keys: list[str]) -> Catalog:
    for name, data in Catalog.from_metadata(metadata_for(keys)).files().items():
        (tmp_path / name).write_bytes(data)
    return Catalog.open(tmp_path)


def test_every_row_and_key_round_trips_through_the_files(tmp_path: Path) -> None:
    catalog = published(tmp_path, KEYS)
    assert len(catalog) == len(catalog.items) == catalog.count == len(KEYS)
    assert [entry.key for entry in catalog.items] == KEYS
    assert list(catalog.items) == [Entry(key, key.split("/")[0]) for key in KEYS]
    for row, key in enumerate(KEYS):
        assert catalog.row(key) == row and catalog.rows[key] == row
    assert catalog.folders == {"a": (0, 3), "a-b": (3, 5), "zeta": (5, 7)}
    assert (catalog.build_id, catalog.model, catalog.dim, catalog.bucket) == (
        "b1",
        "m",
        4,
        "bucket",
    )
    # The sorted order the binary search relies on is the keys' code point order.
    order = np.load(tmp_path / KEY_ORDER_FILE)
    assert [KEYS[row] for row in order] == sorted(KEYS)


@pytest.mark.parametrize("key", ["", "a", "a/", "a/z.jpg ", "A/z.jpg", "b/x", "zzz", "a-b/1.jp"])
def test_unknown_keys_have_no_row(tmp_path: Path, key: str) -> None:
    catalog = published(tmp_path, KEYS)
    assert catalog.row(key) is None and catalog.rows.get(key) is None and key not in catalog.rows


def test_the_opened_catalog_answers_like_the_json_one_at_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folders = sorted({f"f{n}" for n in rng.integers(0, 50, 40)})
    keys = sorted(
        {f"{folder}/{rng.integers(0, 10**9)}.jpg" for folder in folders for _ in range(60)},
        key=lambda key: (key.split("/")[0], key),
    )
    opened, parsed = published(tmp_path, keys), Catalog.from_metadata(metadata_for(keys))
    for row in range(0, len(keys), 7):
        assert opened.items[row] == parsed.items[row] == Entry(keys[row], keys[row].split("/")[0])
        assert opened.row(keys[row]) == row
    assert opened.items[-1].key == keys[-1]
    with pytest.raises(IndexError):
        opened.items[len(keys)]


def test_check_refuses_a_catalog_that_disagrees_with_its_index(tmp_path: Path) -> None:
    from image_search.errors import IndexMismatchError

    catalog = published(tmp_path, KEYS)
    catalog.check(index_count=len(KEYS), index_dim=4)
    with pytest.raises(IndexMismatchError, match="disagree"):
        catalog.check(index_count=len(KEYS) + 1, index_dim=4)
    with pytest.raises(IndexMismatchError, match="dim"):
        catalog.check(index_count=len(KEYS), index_dim=8)
