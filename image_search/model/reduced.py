"""Decoding large images at a reduced size: CLIP sees 224 px (336 for the largest models), so a
40-megapixel upload need not be held in memory at full size."""

from __future__ import annotations

import math

from PIL import Image


def draft(image: Image.Image, *, min_side: int) -> None:
    """Before loading: let the JPEG decoder scale by 1/2, 1/4 or 1/8 (Pillow's ``draft``) while
    the shorter side stays at least ``min_side``. Other formats ignore it."""
    width, height = image.size
    short = min(width, height)
    if short >= 2 * min_side:
        scale = min_side / short
        image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def shrink(image: Image.Image, *, min_side: int) -> Image.Image:
    """Reduce by the largest whole factor that keeps the shorter side at least ``min_side``
    (box averaging, as a resize of the model's processor would do before its own resize)."""
    factor = min(image.size) // min_side
    return image.reduce(factor) if factor >= 2 else image
