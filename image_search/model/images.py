"""Decoding image bytes into RGB pictures, refusing what is not an image or is too big."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

from image_search.errors import ImageTooLargeError, InvalidImageError
from image_search.model import reduced

# Pillow format names we accept, recognised from the bytes, never from a filename. Pillow calls
# a JPEG with a multi-picture block (what phone cameras write) MPO; it opens on its primary
# picture, which is the photo. Phones save HEIC (HEIF with HEVC; pillow-heif's opener, on the
# primary picture too) and increasingly AVIF (Pillow's own plugin). Both open lazily like the
# others, so the pixel limit below is checked on the header before anything is decoded.
ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "TIFF", "WEBP", "HEIF", "AVIF")
ACCEPTED_TEXT = "PNG, JPEG, GIF, BMP, TIFF, WEBP, HEIC/HEIF, AVIF"
pillow_heif.register_heif_opener()
# CLIP's processor scales the shorter side up to the model's input (224 px) and only then keeps
# the centre square, so a 1 x 100,000 strip (a 375-byte PNG) would become 224 x 22 million pixels,
# gigabytes, first. Longer strips are cut to this ratio around the centre, which the model sees
# unchanged.
MAX_ASPECT_RATIO = 20
# What Pillow raises on corrupt or malformed files. Beyond OSError/SyntaxError (its own "broken
# file" errors), a tag of the wrong type or count in a TIFF or EXIF block surfaces as a struct,
# type or attribute error deep in a plugin (tests/model/test_images.py
# fuzzes for these). Every one of them is that file's problem, never the caller's.
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    TypeError,
    AttributeError,
    LookupError,
    ArithmeticError,
)


ORIENTATION = 0x0112
# EXIF orientation (2-8) → the transpose that shows the picture upright (EXIF 2.32, 4.6.4 A).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def decode(data: bytes, *, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Decode ``data`` to an RGB image with its EXIF orientation applied.

    The pixel limit is checked on the header, before any pixel is decoded, so a small file that
    claims huge dimensions (a decompression bomb) costs nothing. With ``min_side``, a large image
    comes out reduced, its shorter side still at least ``min_side`` (``model/reduced.py``).
    """
    if not data:
        raise InvalidImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise InvalidImageError(
                    f"unsupported image format {image.format}; accepted: {ACCEPTED_TEXT}"
                )
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image is {width}x{height} pixels; the limit is {max_pixels} pixels"
                )
            if min_side:
                reduced.draft(image, min_side=min_side)
            image.load()
            picture = to_rgb(upright(image))
            if min_side:
                picture = reduced.shrink(picture, min_side=min_side)
            return _centre_band(picture)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image exceeds the pixel limit: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"not a recognised image; accepted: {ACCEPTED_TEXT}") from exc
    except DECODE_ERRORS as exc:
        raise InvalidImageError(f"the image could not be decoded ({exc})") from exc


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says it is shown.

    Not ``ImageOps.exif_transpose``: after turning the pixels it rewrites the EXIF block, which
    raises on a tag of the wrong type anywhere in it (files in the wild have them) and would
    refuse a picture that decodes. Only the orientation matters here; a malformed one is none.
    """
    try:
        orientation = image.getexif().get(ORIENTATION)
    except DECODE_ERRORS:
        return image
    method = UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image if method is None else image.transpose(method)


def _centre_band(image: Image.Image) -> Image.Image:
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if long <= MAX_ASPECT_RATIO * short:
        return image
    keep = MAX_ASPECT_RATIO * short + (long - MAX_ASPECT_RATIO * short) % 2  # an exact centre
    start = (long - keep) // 2
    box = (start, 0, start + keep, height) if width > height else (0, start, width, start + keep)
    return image.crop(box)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparent areas become white, 16-bit is scaled down."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith(("I", "F")):
        # Pillow's convert("L") clips 16/32-bit values instead of scaling them.
        pixels = np.asarray(image, dtype=np.float32)
        if pixels.max(initial=0) > 255:
            pixels = (pixels / 256).astype(np.float32)
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
