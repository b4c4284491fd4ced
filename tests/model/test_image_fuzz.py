"""Malformed files: whatever Pillow meets inside one file ends as an RGB image or a clean error.

A bounded, seeded mutation fuzzer over real files of every accepted format: bytes flipped in the
headers, and the TIFF/EXIF tags rewritten with wrong types, counts and offsets. Every input must
decode to an RGB image or raise InvalidImageError / ImageTooLargeError, never anything else.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections import Counter

import pytest
from PIL import Image

from image_search.errors import ImageTooLargeError, InvalidImageError
from image_search.model.images import decode
from tests.support.factories import (
    encode,
    jpeg_with_bad_exif,
    mpo_bytes,
    random_image,
    skimage_photos,
    tiff_2x2,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on broken tags

MUTATIONS_PER_FILE = 150
MAX_PIXELS = 2_000_000
# TIFF field types 1-12 are defined; the rest are nonsense a file may still carry.
FIELD_TYPES = [*range(0, 14), 16, 17, 18, 99, 0xFFFF]
COUNTS = [0, 1, 2, 3, 255, 65_535, 2**31, 2**32 - 1]


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "Camera maker"  # Make (text)
    exif[0x011A] = 72.0  # XResolution (rational)
    exif[0x0128] = 2  # ResolutionUnit
    return exif


def seed_files() -> dict[str, bytes]:
    picture = random_image(7, size=(40, 30))
    photos = skimage_photos()
    return {
        "jpeg-photo": photos["rocket.jpg"],
        "jpeg-exif": encode(picture, "JPEG", exif=_exif()),
        "mpo": mpo_bytes(8),
        "png-photo": photos["chelsea.png"],
        "png-exif": encode(picture, "PNG", exif=_exif()),
        "png-palette": encode(picture.convert("P"), "PNG"),
        "tiff": encode(picture, "TIFF", dpi=(72, 72), description="a tiff"),
        "tiff-lzw": encode(picture, "TIFF", compression="tiff_lzw"),
        "tiff-handmade": tiff_2x2(),
        "gif": encode(picture, "GIF"),
        "webp-exif": encode(picture, "WEBP", exif=_exif()),
    }


def tiff_start(data: bytes) -> int | None:
    """Where the TIFF structure (a TIFF file, or the EXIF block of a JPEG/PNG/WEBP) starts."""
    if data[:4] in (b"II*\0", b"MM\0*"):
        return 0
    for marker, skip in ((b"Exif\0\0", 6), (b"eXIf", 4)):
        at = data.find(marker)
        if at >= 0:
            return at + skip
    return None


def ifd_entries(data: bytes, start: int) -> list[int]:
    """Positions of the first IFD's 12-byte entries."""
    order = "<" if data[start : start + 2] == b"II" else ">"
    try:
        (first,) = struct.unpack_from(order + "I", data, start + 4)
        (count,) = struct.unpack_from(order + "H", data, start + first)
    except struct.error:
        return []
    table = start + first + 2
    return [table + 12 * i for i in range(min(count, 64)) if table + 12 * (i + 1) <= len(data)]


def fix_png_crcs(data: bytearray) -> None:
    """Recompute every PNG chunk's CRC, so a mutated chunk is parsed rather than rejected."""
    at = 8
    while at + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        end = at + 8 + length
        if end + 4 > len(data):
            return
        struct.pack_into(">I", data, end, zlib.crc32(data[at + 4 : end]))
        at = end + 4


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutation: a tag given a wrong type, count or value, or header bytes flipped."""
    out = bytearray(data)
    start = tiff_start(data)
    entries = ifd_entries(data, start) if start is not None else []
    if entries and rng.random() < 0.6:
        at = rng.choice(entries)
        order = "<" if data[start : start + 2] == b"II" else ">"  # type: ignore[index]
        field = rng.choice(["type", "count", "value"])
        if field == "type":
            struct.pack_into(order + "H", out, at + 2, rng.choice(FIELD_TYPES))
        elif field == "count":
            struct.pack_into(order + "I", out, at + 4, rng.choice(COUNTS))
        else:
            struct.pack_into(order + "I", out, at + 8, rng.randrange(2**32))
        what = f"tag at {at}: {field}"
    else:
        spots = [rng.randrange(min(len(out), 256)) for _ in range(rng.randint(1, 4))]
        for spot in spots:
            out[spot] = rng.randrange(256)
        what = f"header bytes {spots}"
    if data.startswith(b"\x89PNG"):
        fix_png_crcs(out)
    return what, bytes(out)


@pytest.mark.parametrize("name", list(seed_files()))
def test_mutated_files_decode_to_rgb_or_fail_cleanly(name: str) -> None:
    original = seed_files()[name]
    assert decode(original, max_pixels=MAX_PIXELS).mode == "RGB"
    rng = random.Random(f"{name}-fuzz")  # the same cases on every run
    outcomes: Counter[str] = Counter()
    escaped: list[str] = []
    for case in range(MUTATIONS_PER_FILE):
        what, data = mutate(original, rng)
        try:
            picture = decode(data, max_pixels=MAX_PIXELS)
        except (InvalidImageError, ImageTooLargeError):
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - anything else is the bug this test looks for
            escaped.append(f"case {case} ({what}): {type(exc).__name__}: {exc}")
            continue
        assert picture.mode == "RGB" and min(picture.size) > 0, (case, what)
        outcomes["decoded"] += 1
    assert not escaped, "\n".join(escaped[:10])
    # The mutations reach both outcomes, so neither branch of the check is vacuous.
    assert outcomes["decoded"] and outcomes["refused"], outcomes


def test_a_wrong_tag_type_in_the_pixels_layout_is_an_invalid_image() -> None:
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        decode(tiff_2x2(text_strip_offsets=True), max_pixels=MAX_PIXELS)


def test_a_wrong_tag_type_in_exif_alone_still_decodes() -> None:
    assert decode(jpeg_with_bad_exif(), max_pixels=MAX_PIXELS).mode == "RGB"
