"""Decoding: every accepted format and mode becomes RGB; bad bytes become clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from image_search.errors import ImageTooLargeError, InvalidImageError
from image_search.model.images import decode
from tests.support.factories import (
    encode,
    jpeg_with_bad_exif,
    mpo_bytes,
    phone_bytes,
    random_image,
)

LIMIT = 10_000_000


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "L", "CMYK", "I;16", "1", "RGB"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    source = random_image(1, mode="RGB")
    if mode == "I;16":
        image = Image.frombytes(
            "I;16",
            source.size,
            bytes(range(256)) * (source.size[0] * source.size[1] * 2 // 256 + 1),
        )
        fmt = "PNG"
    else:
        image = source.convert(mode)
        fmt = "TIFF" if mode == "CMYK" else "PNG"
    decoded = decode(encode(image, fmt), max_pixels=LIMIT)
    assert decoded.mode == "RGB"
    assert decoded.size == source.size


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (4, 4), 40_000)  # 40000 / 256 ≈ 156, not clipped to 255
    pixel = decode(encode(image, "PNG"), max_pixels=LIMIT).getpixel((0, 0))
    assert pixel == (156, 156, 156)


def test_transparency_becomes_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode(encode(image, "PNG"), max_pixels=LIMIT).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_accepted_formats(fmt: str) -> None:
    assert decode(encode(random_image(2), fmt), max_pixels=LIMIT).size == (48, 40)


def test_exif_orientation_is_applied() -> None:
    image = random_image(3, size=(60, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    decoded = decode(encode(image, "JPEG", exif=exif), max_pixels=LIMIT)
    assert decoded.size == (20, 60)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_turns_as_pillows_exif_transpose(orientation: int) -> None:
    """``upright`` is Pillow's ``exif_transpose`` without the EXIF rewrite: the same pixels."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(random_image(7, size=(7, 5)), "PNG", exif=exif)  # lossless: pixels compare
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert np.array_equal(np.asarray(decode(data, max_pixels=LIMIT)), np.asarray(expected))


def test_a_picture_with_malformed_exif_is_decoded_and_turned() -> None:
    """Its EXIF holds a tag of the wrong type beside a valid orientation (Pillow's
    ``exif_transpose`` raises on it): the picture is indexed, turned as the orientation says."""
    assert decode(jpeg_with_bad_exif(), max_pixels=LIMIT).size == (40, 48)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, I am text pretending to be a jpeg", "not a recognised image"),
        (encode(random_image(4), "JPEG")[:200], "could not be decoded"),
        (encode(random_image(5), "PNG")[:100], "could not be decoded"),
        (encode(random_image(6), "PPM"), "unsupported image format"),
    ],
    ids=["empty", "text", "truncated-jpeg", "truncated-png", "ppm"],
)
def test_bad_bytes_are_invalid(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        decode(data, max_pixels=LIMIT)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, "PNG")  # 400 M pixels in a ~50 KB file
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(ImageTooLargeError, match="pixels"):
        decode(buffer.getvalue(), max_pixels=LIMIT)


def test_camera_jpeg_with_a_multi_picture_block_decodes_to_its_primary_picture() -> None:
    data = mpo_bytes(9)
    assert Image.open(io.BytesIO(data)).format == "MPO"  # what Pillow calls it
    decoded = decode(data, max_pixels=LIMIT)
    primary = decode(encode(random_image(9), "JPEG"), max_pixels=LIMIT)
    assert decoded.mode == "RGB" and decoded.size == primary.size == (48, 40)
    # The same picture as the JPEG of the primary image alone (both lossy: compare loosely).
    difference = np.abs(np.asarray(decoded, np.int16) - np.asarray(primary, np.int16))
    assert difference.mean() < 4


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_decode_to_the_same_picture(fmt: str) -> None:
    # A smooth picture: lossy codecs keep it close, where noise would be smeared.
    red, green = Image.linear_gradient("L"), Image.radial_gradient("L")
    image = Image.merge("RGB", (red, green, red.rotate(90))).resize((64, 48))
    decoded = decode(phone_bytes(image, fmt), max_pixels=LIMIT)
    assert decoded.mode == "RGB" and decoded.size == (64, 48)
    difference = np.abs(np.asarray(decoded, np.int16) - np.asarray(image, np.int16))
    assert difference.mean() < 8


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_obey_the_same_limits(fmt: str) -> None:
    data = phone_bytes(random_image(8, size=(400, 300)), fmt)
    with pytest.raises(ImageTooLargeError, match="pixels"):
        decode(data, max_pixels=100_000)
    with pytest.raises(InvalidImageError):
        decode(data[: len(data) // 2], max_pixels=LIMIT)
