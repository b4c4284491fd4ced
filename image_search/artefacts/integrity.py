"""What a compact catalog must be before it is served: checked at load, in O(n) numpy passes.

The files come from S3 and are validated like user input. A damaged file would otherwise answer
500s (an offset past the end of ``keys.bin``, a row past the index), wrong keys (offsets out of
order) or wrong filtering (a folder range over another folder's rows, keys out of order for the
binary searches).

Two levels, by what they cost at 10M images (docs/scale.md#integrity-checks):

- always: the arrays' shapes and types, offsets rising from 0 to the end of ``keys.bin``,
  ``keys.bin`` UTF-8 with every key starting on a character, ``key_order`` a permutation (the
  identity in builds sorted by key), each folder range holding its own folder's keys;
- the keys in byte order, compared in full: only when ``catalog.json`` records no checksums
  (builds published before them). With checksums, the bytes are those the publisher wrote, in
  the order it sorted them; a full comparison would take ~1 s at 10M, a third of the cold start.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from image_search.artefacts import photos as photo_format
from image_search.artefacts.manifest import MAX_CAMERA, BuildHeader, CatalogHeader
from image_search.errors import IndexMismatchError
from image_search.storage import checksum
from image_search.storage.s3 import folder_of

Bytes = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.integer]
# Rows compared at a time: small enough for the temporaries to stay in cache.
CHUNK = 1 << 16
UTF8_CHUNK = 8 * 2**20
# The first ``n`` bytes of a big-endian word, for n = 0..8.
_KEEP = np.array(
    [0] + [(2**64 - 1) ^ (2 ** (64 - 8 * n) - 1) for n in range(1, 9)], dtype=np.uint64
)


class DamagedCatalogError(IndexMismatchError):
    """A compact catalog file that cannot be what a publisher wrote."""


def verify_checksums(header: CatalogHeader, computed: Mapping[str, str]) -> bool:
    """True when ``catalog.json`` records a checksum for every file and each matches ``computed``
    (file name → checksum); False when it records none. Raises on a mismatch."""
    if not header.checksums:
        return False
    for name, found in computed.items():
        expected = header.checksums.get(name)
        if expected is None:
            raise _damaged(header, f"catalog.json records no checksum for {name}")
        if not expected.startswith(f"{checksum.ALGORITHM}:"):
            raise _damaged(header, f"{name}'s checksum {expected!r} is of an unknown kind")
        if expected != found:
            raise _damaged(header, f"{name} does not match its checksum (truncated or altered)")
    return True


def check_arrays(
    header: BuildHeader, *, keys: Bytes, offsets: Ints, order: Ints, full: bool
) -> None:
    """Raise ``DamagedCatalogError`` unless the three binary files fit together and the header.

    ``full``: also compare every key with the next in byte order (costly; see the module).
    """
    count = header.count
    if offsets.ndim != 1 or offsets.dtype != np.int64 or len(offsets) != count + 1:
        raise _damaged(header, f"key_offsets.npy is not {count + 1} int64 offsets")
    if order.ndim != 1 or order.dtype.kind not in "iu" or len(order) != count:
        raise _damaged(header, f"key_order.npy is not {count} integer rows")
    if offsets[0] != 0 or offsets[-1] != len(keys):
        raise _damaged(header, f"key offsets do not run from 0 to keys.bin's {len(keys)} bytes")
    if count and not bool((offsets[1:] > offsets[:-1]).all()):
        raise _damaged(header, "key offsets do not rise (an empty key, or keys out of place)")
    _check_utf8(header, keys, offsets)
    _check_order(header, order)
    if full:
        runs = [(0, count)] if header.sorted_by == "key" else sorted(header.folders.values())
        for start, stop in runs:
            if not _ascending(keys, offsets[start : stop + 1]):
                raise _damaged(header, "keys.bin is not sorted by key")
        if header.sorted_by != "key" and not _ascending_rows(keys, offsets, order):
            raise _damaged(header, "key_order.npy does not sort the keys")


def check_photos(header: BuildHeader, array: np.ndarray, *, cameras: list[str]) -> None:
    """``photos.npy`` holds one record per row of the published layout, naming only cameras
    ``catalog.json`` lists, with times and offsets a datetime can hold: the service turns them
    into hits and filters without another check."""
    if array.dtype != photo_format.PHOTO_DTYPE or array.shape != (header.count,):
        raise _damaged(header, f"photos.npy is not {header.count} photo records")
    if sorted(set(cameras)) != cameras or not all(0 < len(c) <= MAX_CAMERA for c in cameras):
        raise _damaged(header, "catalog.json's camera names are not distinct, sorted names")
    for start in range(0, len(array), CHUNK * 16):
        part = array[start : start + CHUNK * 16]
        if len(part) and int(part["camera"].max()) > len(cameras):
            raise _damaged(header, "photos.npy names a camera catalog.json does not list")
        if len(part) and int(part["source"].max()) > max(photo_format.SOURCES):
            raise _damaged(header, "photos.npy holds a date source it cannot have")
        offsets = part["offset"].astype(np.int32)
        known = offsets != photo_format.NO_OFFSET
        if bool((np.abs(offsets[known]) > photo_format.MAX_OFFSET_MINUTES).any()):
            raise _damaged(header, "photos.npy holds a time zone offset out of range")
        for name in ("taken", "modified"):
            times = part[name]
            times = times[times != photo_format.NO_TIME]
            low, high = photo_format.FIRST_SECOND, photo_format.LAST_SECOND
            if len(times) and (int(times.min()) < low or int(times.max()) > high):
                raise _damaged(header, f"photos.npy holds a {name} time out of range")


def check_folders(header: BuildHeader, *, rows: int, key: Callable[[int], str]) -> None:
    """Each folder range holds only its folder's keys, and the ranges cover every one of the
    ``rows`` (whether that is the header's count is ``BuildHeader.check``'s to say).

    Rows inside a range are sorted by key and keys sharing a folder are contiguous in that order,
    so a range whose first and last keys are in its folder holds nothing else.
    """
    header.check_folder_ranges()  # inside the header's count, none overlapping
    covered = 0
    for name, (start, stop) in header.folders.items():
        if stop > rows:
            raise _damaged(header, f"folder {name!r} range [{start}, {stop}) is past row {rows}")
        for row in (start, stop - 1):
            if folder_of(key(row)) != name:
                raise _damaged(
                    header, f"folder {name!r} range [{start}, {stop}) holds {key(row)!r}"
                )
        covered += stop - start
    if covered != rows:
        raise _damaged(header, f"folder ranges cover {covered} rows of {rows}")


def _check_utf8(header: BuildHeader, keys: Bytes, offsets: Ints) -> None:
    # ASCII needs no decoding; only the chunks holding other bytes go through the decoder.
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(keys)  # type: ignore[arg-type]
    try:
        for start in range(0, len(keys), UTF8_CHUNK):
            chunk = keys[start : start + UTF8_CHUNK]
            if decoder.getstate()[0] or int(chunk.max()) >= 0x80:
                decoder.decode(view[start : start + UTF8_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _damaged(header, f"keys.bin is not UTF-8 ({exc.reason})") from exc
    # A key starting on a continuation byte would split a character with its neighbour.
    if len(keys) and bool(((keys[offsets[:-1]] & 0xC0) == 0x80).any()):
        raise _damaged(header, "a key offset falls inside a UTF-8 character")


def _check_order(header: BuildHeader, order: Ints) -> None:
    count = header.count
    if header.sorted_by == "key":  # row order is key order
        if not np.array_equal(order, np.arange(count, dtype=order.dtype)):
            raise _damaged(header, "key_order.npy is not the identity of a build sorted by key")
        return
    if count and (int(order.min()) < 0 or int(order.max()) >= count):
        raise _damaged(header, "key_order.npy names rows outside the catalog")
    seen = np.zeros(count, dtype=bool)
    seen[order] = True
    if not seen.all():
        raise _damaged(header, "key_order.npy names a row twice (it is not a permutation)")


def _ascending(keys: Bytes, offsets: Ints) -> bool:
    """Whether the keys between consecutive ``offsets`` rise strictly in byte order."""
    starts = offsets[:-1]
    return _rising(keys, starts, offsets[1:] - starts)


def _ascending_rows(keys: Bytes, offsets: Ints, order: Ints) -> bool:
    rows = np.asarray(order, dtype=np.int64)
    starts = offsets[rows]
    return _rising(keys, starts, offsets[rows + 1] - starts)


def _rising(keys: Bytes, starts: Ints, lengths: Ints) -> bool:
    """Key i < key i+1 for every i, comparing 8 bytes at a time: each round keeps only the pairs
    whose words were equal and neither key ended."""
    if len(starts) < 2:
        return True
    word_at = _words(keys)
    for low in range(0, len(starts) - 1, CHUNK):
        s = np.asarray(starts[low : low + CHUNK + 1], dtype=np.int64)
        n = np.asarray(lengths[low : low + CHUNK + 1], dtype=np.int64)
        left_s, left_n, right_s, right_n = s[:-1], n[:-1], s[1:], n[1:]
        words = word_at(s, n, 0)
        left, right = words[:-1], words[1:]
        depth = 0
        while True:
            if bool((left > right).any()):
                return False
            tied = left == right
            ends = np.minimum(left_n, right_n) <= depth + 8
            if bool((tied & ends & (left_n >= right_n)).any()):
                return False  # equal, or the right key is a prefix of the left one
            going = tied & ~ends
            if not going.any():
                break
            left_s, left_n = left_s[going], left_n[going]
            right_s, right_n = right_s[going], right_n[going]
            depth += 8
            left, right = word_at(left_s, left_n, depth), word_at(right_s, right_n, depth)
    return True


def _words(keys: Bytes) -> Callable[[Ints, Ints, int], npt.NDArray[np.uint64]]:
    """``word(starts, lengths, depth)``: each key's bytes ``depth`` to ``depth + 8`` as one
    big-endian integer, zero past the key's end, read through an overlapping view of
    ``keys.bin`` (no copy)."""
    if len(keys) < 8:
        keys = np.concatenate([keys, np.zeros(8 - len(keys), dtype=np.uint8)])
    view = np.ndarray(shape=(len(keys) - 7,), dtype=">u8", buffer=keys, strides=(1,))
    last = len(keys) - 8

    def word(starts: Ints, lengths: Ints, depth: int) -> npt.NDArray[np.uint64]:
        at = starts + depth
        read = np.minimum(at, last)
        # Near the end of the file the word is read earlier and shifted into place.
        shift = np.minimum(at - read, 7).astype(np.uint64) * np.uint64(8)
        found = view[read].astype(np.uint64) << shift
        return found & _KEEP[np.clip(lengths - depth, 0, 8)]

    return word


def _damaged(header: BuildHeader, what: str) -> DamagedCatalogError:
    return DamagedCatalogError(
        f"build {header.build_id}: {what}; the catalog is damaged: publish the build again "
        "(python -m image_search build --full) or roll back (python -m image_search rollback)"
    )
