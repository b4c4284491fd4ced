"""A damaged compact catalog is refused when opened, whichever file is damaged and however, with
a reason naming the file; an undamaged one (with or without checksums) opens."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts import integrity
from image_search.artefacts.catalog import Catalog
from image_search.artefacts.integrity import DamagedCatalogError
from image_search.artefacts.manifest import (
    CATALOG_FILE,
    KEY_OFFSETS_FILE,
    KEY_ORDER_FILE,
    KEYS_FILE,
)
from image_search.errors import IndexMismatchError
from image_search.storage import checksum
from tests.support.factories import metadata_for

# In key order; "a/ä.jpg" holds a two-byte character (bytes 2 and 3 of the key).
KEYS = ["a/1.jpg", "a/2.jpg", "a/ä.jpg", "b/1.jpg", "b/2.jpg", "c/x/y.jpg"]
# In folder order (the builds before key order): "a-b" comes after "a" as a folder.
FOLDER_KEYS = ["a/1.jpg", "a/2.jpg", "a-b/1.jpg", "b/1.jpg", "b/2.jpg"]


def publish(folder: Path, keys: list[str], *, sorted_by: str = "key") -> Path:
    for name, data in (
        Catalog.from_metadata(metadata_for(keys, sorted_by=sorted_by)).files().items()
    ):
        (folder / name).write_bytes(data)
    return folder


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def array_change(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[bytes], bytes]:
    return lambda data: npy(change(np.load(io.BytesIO(data)).copy()))


def swap(i: int, j: int) -> Callable[[np.ndarray], np.ndarray]:
    def change(array: np.ndarray) -> np.ndarray:
        array[[i, j]] = array[[j, i]]
        return array

    return change


def set_at(i: int, value: int) -> Callable[[np.ndarray], np.ndarray]:
    def change(array: np.ndarray) -> np.ndarray:
        array[i] = value
        return array

    return change


def header(folder: Path) -> dict:
    return json.loads((folder / CATALOG_FILE).read_bytes())


def write_header(folder: Path, value: dict) -> None:
    (folder / CATALOG_FILE).write_text(json.dumps(value))


def damage(folder: Path, name: str, change: Callable[[bytes], bytes], *, checksums: str) -> None:
    """``change`` one file; then keep the recorded checksums, drop them (a build published before
    them) or record the damaged file's (a writer who knew the format)."""
    path = folder / name
    path.write_bytes(change(path.read_bytes()))
    value = header(folder)
    if checksums == "drop":
        value.pop("checksums", None)
    elif checksums == "recompute":
        value.setdefault("checksums", {})[name] = checksum.of_file(path)
    write_header(folder, value)


def test_a_published_catalog_records_checksums_and_opens(tmp_path: Path) -> None:
    folder = publish(tmp_path, KEYS)
    recorded = header(folder)["checksums"]
    assert set(recorded) == {KEYS_FILE, KEY_OFFSETS_FILE, KEY_ORDER_FILE}
    assert recorded[KEYS_FILE] == checksum.of_bytes("".join(KEYS).encode())
    catalog = Catalog.open(folder)
    assert list(catalog.keys) == KEYS and catalog.row("a/ä.jpg") == 2


@pytest.mark.parametrize("sorted_by", ["key", "folder"])
def test_a_catalog_without_checksums_still_opens(tmp_path: Path, sorted_by: str) -> None:
    keys = KEYS if sorted_by == "key" else FOLDER_KEYS
    folder = publish(tmp_path, keys, sorted_by=sorted_by)
    value = header(folder)
    value.pop("checksums")
    write_header(folder, value)
    assert list(Catalog.open(folder).keys) == keys


def test_a_key_changed_in_place_is_caught_by_the_checksum_alone(tmp_path: Path) -> None:
    # Still UTF-8, still sorted, same length: nothing else could tell.
    def altered(data: bytes) -> bytes:
        return data.replace(b"c/x/y", b"c/x/z")

    folder = publish(tmp_path, KEYS)
    damage(folder, KEYS_FILE, altered, checksums="keep")
    with pytest.raises(DamagedCatalogError, match="keys.bin does not match its checksum"):
        Catalog.open(folder)
    damage(folder, KEYS_FILE, lambda data: data, checksums="drop")
    assert Catalog.open(folder).key(5) == "c/x/z.jpg"


DAMAGE = {
    "keys.bin truncated": (KEYS_FILE, lambda d: d[:-1], "keep", "keys.bin does not match"),
    "keys.bin truncated, no checksums": (KEYS_FILE, lambda d: d[:-1], "drop", "run from 0"),
    "keys.bin not UTF-8": (
        KEYS_FILE,
        lambda d: d.replace("ä".encode(), b"\xff\xfe"),
        "recompute",
        "not UTF-8",
    ),
    "offsets out of order": (
        KEY_OFFSETS_FILE,
        array_change(swap(2, 3)),
        "recompute",
        "do not rise",
    ),
    "an offset inside a character": (
        KEY_OFFSETS_FILE,
        # Key 2 ("a/ä.jpg") would start on ä's second byte.
        array_change(set_at(2, 14 + 3)),
        "recompute",
        "inside a UTF-8 character",
    ),
    "offsets past keys.bin": (
        KEY_OFFSETS_FILE,
        array_change(set_at(6, 999)),
        "recompute",
        "run from 0",
    ),
    "offsets as floats": (
        KEY_OFFSETS_FILE,
        array_change(lambda a: a.astype(np.float64)),
        "recompute",
        "int64 offsets",
    ),
    "offsets not an array": (KEY_OFFSETS_FILE, lambda d: b"garbage", "recompute", "unreadable"),
    "key_order shuffled": (
        KEY_ORDER_FILE,
        array_change(swap(0, 4)),
        "recompute",
        "not the identity",
    ),
    "key_order cut short": (
        KEY_ORDER_FILE,
        array_change(lambda a: a[:-1]),
        "recompute",
        "not 6 integer rows",
    ),
    "keys out of order, no checksums": (
        KEYS_FILE,
        lambda d: d.replace(b"a/1", b"a/#").replace(b"a/2", b"a/1").replace(b"a/#", b"a/2"),
        "drop",
        "keys.bin is not sorted by key",
    ),
    "a key twice, no checksums": (
        KEYS_FILE,
        lambda d: d.replace(b"b/1", b"a/2"),
        "drop",
        "not sorted by key",
    ),
    "an unknown checksum": (KEYS_FILE, lambda d: d, "sha256", "unknown kind"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_file_is_refused_with_its_name(tmp_path: Path, case: str) -> None:
    name, change, checksums, reason = DAMAGE[case]
    folder = publish(tmp_path, KEYS)
    if checksums == "sha256":
        value = header(folder)
        value["checksums"][name] = "sha256:" + "0" * 64
        write_header(folder, value)
    else:
        damage(folder, name, change, checksums=checksums)
    with pytest.raises(DamagedCatalogError, match=reason):
        Catalog.open(folder)


FOLDER_DAMAGE = {
    "key_order names a row twice": (array_change(set_at(1, 2)), "recompute", "not a permutation"),
    "key_order past the end": (array_change(set_at(0, 5)), "recompute", "outside the catalog"),
    "key_order not sorted, no checksums": (array_change(swap(0, 1)), "drop", "does not sort"),
}


@pytest.mark.parametrize("case", FOLDER_DAMAGE)
def test_a_damaged_key_order_of_a_build_sorted_by_folder_is_refused(
    tmp_path: Path, case: str
) -> None:
    change, checksums, reason = FOLDER_DAMAGE[case]
    folder = publish(tmp_path, FOLDER_KEYS, sorted_by="folder")
    damage(folder, KEY_ORDER_FILE, change, checksums=checksums)
    with pytest.raises(DamagedCatalogError, match=reason):
        Catalog.open(folder)


@pytest.mark.parametrize(
    ("folders", "reason"),
    [
        ({"a": [3, 5], "b": [0, 3], "c": [5, 6]}, "folder 'a' range \\[3, 5\\) holds 'b/1.jpg'"),
        ({"a": [0, 2], "b": [2, 5], "c": [5, 6]}, "folder 'b' range \\[2, 5\\) holds 'a/ä.jpg'"),
        ({"a": [0, 4], "b": [3, 5], "c": [5, 6]}, "'b' range \\[3, 5\\) overlaps folder 'a'"),
        ({"a": [0, 3], "b": [3, 5], "c": [5, 9]}, "\\[5, 9\\) is not inside the index of 6"),
        ({"a": [0, 3], "b": [3, 5]}, "cover 5 rows of 6"),
    ],
)
def test_folder_ranges_that_do_not_match_the_keys_are_refused(
    tmp_path: Path, folders: dict, reason: str
) -> None:
    folder = publish(tmp_path, KEYS)
    value = header(folder)
    value["folders"] = folders
    write_header(folder, value)
    with pytest.raises(IndexMismatchError, match=reason):
        Catalog.open(folder)


def test_the_word_by_word_comparison_agrees_with_python_on_every_order(tmp_path: Path) -> None:
    """Keys sharing long prefixes, prefixes of each other, multi-byte characters, keys shorter
    than a word at the end of the file: rising exactly when Python's byte order says so."""
    rng = np.random.default_rng(0)
    alphabet = ["a", "b", "/", "é", "日", "0", "z"]
    for trial in range(300):
        stem = "folder/sub/" * int(rng.integers(0, 3))
        keys = [
            stem + "".join(rng.choice(alphabet, size=int(rng.integers(1, 12))))
            for _ in range(int(rng.integers(2, 40)))
        ]
        if trial % 2:
            keys = sorted(set(keys))
        if trial % 5 == 0 and len(keys) > 2:  # a neighbour swapped, or a key repeated
            keys[1], keys[2] = (keys[2], keys[1]) if trial % 3 else (keys[1], keys[1])
        data = [key.encode() for key in keys]
        offsets = np.zeros(len(data) + 1, dtype=np.int64)
        np.cumsum([len(key) for key in data], out=offsets[1:])
        buffer = np.frombuffer(b"".join(data), dtype=np.uint8)
        expected = all(a < b for a, b in zip(data, data[1:], strict=False))
        assert integrity._ascending(buffer, offsets) == expected, keys
