"""Pictures in every Pillow mode and awkward sizes, for the preprocessing and runtime tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Strips, odd sizes, exact and one-off the 224 crop; the strips stay short because the resize
# scales the shorter side up first (a 2 x 300 strip would become 224 x 33,600 pixels).
SIZES = [(1, 1), (3, 70), (70, 3), (31, 47), (33, 32), (224, 224), (225, 223), (640, 480)]
MODES = ["RGB", "RGBA", "L", "LA", "P", "P+transparency", "CMYK", "I;16", "I", "F", "1"]


def picture(seed: int, size: tuple[int, int], mode: str) -> Image.Image:
    """Noise in ``mode``, with random alpha where the mode has transparency."""
    rng = np.random.default_rng(seed)
    rgba = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    if mode == "P+transparency":
        image = rgba.convert("RGB").convert("P")
        image.info["transparency"] = 7
        return image
    if mode == "I;16":
        return rgba.convert("L").convert("I;16")
    return rgba.convert(mode)
