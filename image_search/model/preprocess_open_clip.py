"""open_clip's evaluation transform in PIL and numpy, as an open_clip export records it.

open_clip builds it from torchvision: Resize (the shorter side, or "squash" to the square), a
centre crop, ``convert("RGB")``, ToTensor, Normalize. It differs from transformers' CLIP processor
in ways that move pixels, so it is reproduced on its own terms: the mode conversion comes after
the resize and crop (a palette image is resized in its palette, with nearest neighbour, as PIL
does), the crop offset is rounded rather than floored, and ToTensor divides by 255 in float32.
tests/model/open_clip/test_preprocess.py holds it against open_clip's own transform.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

Pixels = npt.NDArray[np.float32]

# ``image_processor_type`` in an open_clip export's preprocessor_config.json.
PROCESSOR_TYPE = "OpenClipTransform"
# open_clip's interpolation names; torchvision hands PIL images to PIL's own filters.
RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
RESIZE_MODES = ("shortest", "squash")


@dataclass(frozen=True)
class OpenClipSpec:
    """open_clip's ``PreprocessCfg`` at inference: what its ``image_transform`` does."""

    size: tuple[int, int]  # (height, width) of the model's input
    resize_mode: str  # "shortest": shorter side to the size, then a centre crop; "squash"
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OpenClipSpec:
        """From an export's config; ``ValueError`` for what open_clip does that we do not."""
        size = config["size"]
        height, width = (size, size) if isinstance(size, int) else map(int, size)
        mode = str(config.get("resize_mode", "shortest"))
        if mode not in RESIZE_MODES:
            raise ValueError(f"open_clip resize_mode {mode!r} is not supported: {RESIZE_MODES}")
        if mode == "shortest" and height != width:
            raise ValueError("open_clip's shorter-side resize to a non-square size: not supported")
        interpolation = str(config.get("interpolation", "bicubic"))
        if interpolation not in RESAMPLE:
            raise ValueError(f"open_clip interpolation {interpolation!r} is not supported")
        mean, std = _triple(config["mean"]), _triple(config["std"])
        if 0 in std:
            raise ValueError("a standard deviation of 0 in the preprocessing")
        return cls((height, width), mode, interpolation, mean, std)

    def to_config(self) -> dict[str, Any]:
        return {
            "image_processor_type": PROCESSOR_TYPE,
            "size": list(self.size),
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @property
    def output_size(self) -> tuple[int, int]:
        return self.size

    def pixels(self, images: Sequence[Image.Image]) -> Pixels:
        """A (n, 3, height, width) float32 batch."""
        if not images:
            return np.zeros((0, 3, *self.size), dtype=np.float32)
        return np.stack([self.one(image) for image in images])

    def one(self, image: Image.Image) -> Pixels:
        height, width = self.size
        resample = RESAMPLE[self.interpolation]
        if self.resize_mode == "squash":
            image = image.resize((width, height), resample=resample)
        else:
            image = _centre_crop(image.resize(_shorter_to(image.size, height), resample), height)
        array = np.asarray(image.convert("RGB"), dtype=np.uint8).astype(np.float32)
        array = array / np.float32(255)  # ToTensor's float32 division, not a float64 product
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        array = (array - mean) / std
        return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


def _triple(values: Any) -> tuple[float, float, float]:
    numbers = [float(values)] * 3 if isinstance(values, int | float) else list(map(float, values))
    if len(numbers) != 3:
        raise ValueError(f"expected 3 channel values, got {values!r}")
    return numbers[0], numbers[1], numbers[2]


def _shorter_to(size: tuple[int, int], side: int) -> tuple[int, int]:
    """(width, height) with the shorter side at ``side``; the longer truncated, as torchvision."""
    width, height = size
    if width <= height:
        return side, int(side * height / width)
    return int(side * width / height), side


def _centre_crop(image: Image.Image, side: int) -> Image.Image:
    # After the shorter side went to ``side`` the image covers the crop: no padding case. The
    # offset is rounded half to even (Python's round, as torchvision), not floored.
    width, height = image.size
    top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
    return image.crop((left, top, left + side, top + side))
