"""Photo fields from headers: dates with and without a time zone, the camera, the size as shown;
malformed EXIF gives empty fields, never an error; the first 64 KiB are enough."""

from __future__ import annotations

import io
import struct
from datetime import datetime

import pytest
from PIL import Image

from image_search.model.photo_fields import HEAD_BYTES, PhotoFields, read_fields
from tests.support.factories import (
    ASCII,
    LONG,
    SHORT,
    encode,
    jpeg_with_bad_exif,
    random_image,
    tiff_ifd,
)


def jpeg(size: tuple[int, int] = (48, 40), **tags: object) -> bytes:
    """A JPEG whose EXIF holds ``tags`` (IFD0 names, or the EXIF IFD's for Date*/Offset*)."""
    exif = Image.Exif()
    details = exif.get_ifd(0x8769)
    names = {
        "make": (exif, 0x010F), "model": (exif, 0x0110), "orientation": (exif, 0x0112),
        "date_time": (exif, 0x0132), "original": (details, 0x9003),
        "digitized": (details, 0x9004), "offset": (details, 0x9011),
    }  # fmt: skip
    for name, value in tags.items():
        where, tag = names[name]
        where[tag] = value
    return encode(random_image(5, size=size), "JPEG", exif=exif.tobytes())


def test_a_camera_photo_gives_every_field() -> None:
    data = jpeg(make="Canon", model="Canon EOS 5D", original="2024:06:01 14:03:22", offset="+02:00")
    fields = read_fields(data)
    assert fields == PhotoFields(
        taken=datetime(2024, 6, 1, 14, 3, 22),
        taken_offset="+02:00",
        camera="Canon EOS 5D",
        width=48,
        height=40,
    )
    assert fields.orientation == "landscape"


def test_make_and_model_are_joined_and_the_date_falls_back() -> None:
    fields = read_fields(jpeg(make=" NIKON\0", model="D750 ", date_time="2019:12:31 23:59:59"))
    assert fields.camera == "NIKON D750"
    assert fields.taken == datetime(2019, 12, 31, 23, 59, 59) and fields.taken_offset is None
    assert read_fields(jpeg(digitized="2001:02:03 04:05:06")).taken == datetime(2001, 2, 3, 4, 5, 6)


@pytest.mark.parametrize(
    ("make", "model", "camera"),
    [
        ("Canon", "Canon EOS 5D", "Canon EOS 5D"),
        ("NIKON CORPORATION", "NIKON D850", "NIKON D850"),
        ("OLYMPUS IMAGING CORP.", "E-M5", "OLYMPUS IMAGING CORP. E-M5"),
        ("Apple", "iPhone 12", "Apple iPhone 12"),
        ("Google", "Pixel 7", "Google Pixel 7"),
    ],
)
def test_the_make_is_said_once(make: str, model: str, camera: str) -> None:
    """A model that repeats the make, or its first word, names the camera alone."""
    assert read_fields(jpeg(make=make, model=model)).camera == camera


@pytest.mark.parametrize(
    ("turn", "shown"), [(1, (48, 40)), (3, (48, 40)), (6, (40, 48)), (8, (40, 48))]
)
def test_the_size_is_as_shown_after_the_exif_rotation(turn: int, shown: tuple[int, int]) -> None:
    fields = read_fields(jpeg(orientation=turn))
    assert (fields.width, fields.height) == shown
    assert fields.orientation == ("landscape" if shown[0] > shown[1] else "portrait")


def test_a_square_image_without_exif() -> None:
    fields = read_fields(encode(random_image(1, size=(30, 30)), "PNG"))
    assert fields == PhotoFields(width=30, height=30) and fields.orientation == "square"


@pytest.mark.parametrize(
    "date",
    [
        "0000:00:00 00:00:00",
        "    :  :     :  :  ",
        "2024:13:45 25:61:00",
        "yesterday",
        "x" * 10_000,
    ],
)
def test_impossible_dates_leave_the_date_empty(date: str) -> None:
    fields = read_fields(jpeg(original=date, offset="+01:00", make="Sony"))
    assert fields.taken is None and fields.taken_offset is None
    assert fields.camera == "Sony" and fields.width == 48


def test_huge_or_unprintable_camera_strings_are_dropped() -> None:
    assert read_fields(jpeg(make="A" * 30_000, model="X100")).camera == "X100"
    assert read_fields(jpeg(make="\x01\x02", model="\x07")).camera is None
    assert read_fields(jpeg(offset="+99:99", original="2020:01:01 00:00:00")).taken_offset is None


def test_wrong_types_in_the_exif_give_empty_fields() -> None:
    # Make as a LONG, Orientation as text, a date as a SHORT: written byte by byte.
    exif = tiff_ifd(
        [
            (0x010F, LONG, 1, struct.pack("<I", 7)),
            (0x0112, ASCII, 4, b"six\0"),
            (0x0132, SHORT, 1, struct.pack("<H", 2024)),
        ]
    )
    data = encode(random_image(2), "JPEG", exif=b"Exif\0\0" + exif)
    assert read_fields(data) == PhotoFields(width=48, height=40)
    assert read_fields(jpeg_with_bad_exif()).width == 40  # orientation 6, a bad unit beside it


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xe1" + b"\xff" * 100])
def test_what_is_not_an_image_gives_no_fields_and_no_error(data: bytes) -> None:
    assert read_fields(data) == PhotoFields()


def test_the_first_64_kib_are_enough() -> None:
    big = encode(random_image(3, size=(1500, 1000)), "JPEG", quality=95)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "FUJIFILM", "X-T4"
    exif.get_ifd(0x8769)[0x9003] = "2023:07:08 09:10:11"
    with Image.open(io.BytesIO(big)) as image:
        data = encode(image, "JPEG", exif=exif.tobytes(), quality=95)
    assert len(data) > 2 * HEAD_BYTES
    assert read_fields(data[:HEAD_BYTES]) == read_fields(data)
    assert read_fields(data[:HEAD_BYTES]).camera == "FUJIFILM X-T4"
