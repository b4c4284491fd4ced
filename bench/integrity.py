"""``python -m bench integrity --count N[,N…] --work DIR``: what checking a compact catalog costs.

Writes a build's compact catalog of N keys (~55 characters in 300 folders, like bench scale's, in
key order) with its checksums, then times, in this process, what a load adds (the files are in
the page cache, as right after their download):

- ``hash``: the checksums of the three binary files (artefacts/integrity.py): the work the
  download threads do on each part as it arrives (storage/cache.py), measured here on one thread;
- ``checks``: ``Catalog.open`` once the checksums matched: shapes, offsets, UTF-8, key order,
  folder ranges;
- ``full_order``: comparing every key with the next, which only builds published without
  checksums pay.

Seconds of wall time and of this thread's CPU, one JSON line a count.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

FOLDERS = 300
WORDS = ("beach", "city", "family", "forest", "party", "snow", "sunset")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench integrity", description=__doc__)
    parser.add_argument("--count", required=True, help="keys, comma-separated (1000000,10000000)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the files")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    for count in (int(n) for n in args.count.split(",")):
        folder = args.work / f"catalog-{count}"
        folder.mkdir(parents=True, exist_ok=True)
        write_catalog(folder, count)
        print(json.dumps(measure(folder, count)), flush=True)
    return 0


def keys(count: int) -> Iterator[str]:
    """``count`` keys in byte order: folders, then months, then numbered files."""
    per_folder = -(-count // FOLDERS)
    for row in range(count):
        folder, at = divmod(row, per_folder)
        month, _ = divmod(at * 12, per_folder)
        name = f"trip-{folder:03d}-{2014 + folder % 10}-{WORDS[folder % 7]}"
        yield f"{name}/{1 + month:02d}/IMG_{row:08d}_{WORDS[row % 7]}-{WORDS[row % 5]}.jpg"


def write_catalog(folder: Path, count: int) -> None:
    from image_search.artefacts.catalog import CHECKSUMMED
    from image_search.artefacts.manifest import (
        CATALOG_FILE,
        KEY_OFFSETS_FILE,
        KEY_ORDER_FILE,
        KEYS_FILE,
        CatalogHeader,
    )
    from image_search.storage import checksum

    encoded = [key.encode() for key in keys(count)]
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum([len(key) for key in encoded], out=offsets[1:])
    (folder / KEYS_FILE).write_bytes(b"".join(encoded))
    names = [key.split(b"/", 1)[0].decode() for key in encoded]
    del encoded
    ranges: dict[str, tuple[int, int]] = {}
    for row, name in enumerate(names):
        start, _ = ranges.get(name, (row, row))
        ranges[name] = (start, row + 1)
    np.save(folder / KEY_OFFSETS_FILE, offsets, allow_pickle=False)
    np.save(folder / KEY_ORDER_FILE, np.arange(count, dtype=np.uint32), allow_pickle=False)
    header = CatalogHeader(
        build_id="20261207T000000000000Z-bench0",
        model="bench",
        dim=512,
        index_type="ivf-pq",
        count=count,
        bucket="bench",
        folders=ranges,
        sorted_by="key",
        checksums={name: checksum.of_file(folder / name) for name in CHECKSUMMED},
    )
    (folder / CATALOG_FILE).write_text(header.model_dump_json())


def measure(folder: Path, count: int) -> dict[str, Any]:
    from image_search.artefacts import integrity
    from image_search.artefacts.catalog import CHECKSUMMED, Catalog
    from image_search.artefacts.manifest import KEY_OFFSETS_FILE, KEYS_FILE
    from image_search.storage import checksum

    hashed: dict[str, str] = {}

    def hash_files() -> None:
        hashed.update({name: checksum.of_file(folder / name) for name in CHECKSUMMED})

    def checks() -> None:
        catalog = Catalog.open(folder, checksums=hashed)
        assert len(catalog) == count

    def full_order() -> None:
        keys = np.memmap(folder / KEYS_FILE, dtype=np.uint8, mode="r")
        offsets = np.load(folder / KEY_OFFSETS_FILE, mmap_mode="r")
        assert integrity._ascending(keys, offsets)

    results: dict[str, Any] = {"count": count}
    results["keys_bin_mb"] = round((folder / KEYS_FILE).stat().st_size / 1e6, 1)
    for name, step in (("hash", hash_files), ("checks", checks), ("full_order", full_order)):
        wall, cpu = _timed(step)
        results[f"{name}_s"] = round(wall, 3)
        results[f"{name}_cpu_s"] = round(cpu, 3)
    results["load_average"] = os.getloadavg()
    return results


def _timed(step: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    step()
    return time.perf_counter() - wall, time.thread_time() - cpu
