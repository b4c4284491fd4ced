"""Distinct photo-like 640x480 JPEGs (quality 90) cut from the photos scikit-image ships."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

SIZE = (640, 480)
QUALITY = 90
SOURCES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "color.png",
)


@lru_cache(maxsize=1)
def _sources() -> list[Image.Image]:
    try:
        import skimage

        folder = Path(skimage.__file__).parent / "data"
        found = [Image.open(folder / name).convert("RGB") for name in SOURCES]
    except (ImportError, OSError):
        found = []
    return found or [_gradient()]


def _gradient() -> Image.Image:
    y, x = np.mgrid[0:480, 0:640]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def jpeg(seed: int) -> bytes:
    """A different crop, mirror and colour of a real photo for every seed, as a JPEG."""
    rng = np.random.default_rng(seed)
    sources = _sources()
    source = sources[seed % len(sources)]
    width, height = source.size
    scale = rng.uniform(0.5, 1.0)
    box_w, box_h = int(width * scale), int(height * scale)
    left = int(rng.integers(0, width - box_w + 1))
    top = int(rng.integers(0, height - box_h + 1))
    picture = source.crop((left, top, left + box_w, top + box_h)).resize(
        SIZE, Image.Resampling.BICUBIC
    )
    if rng.random() < 0.5:
        picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    picture = ImageEnhance.Color(picture).enhance(rng.uniform(0.6, 1.4))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()
