"""CLIP's and SigLIP's image preprocessing in PIL and numpy, configured by a
``preprocessor_config.json``.

The ONNX runtime has neither torch nor transformers, so this reproduces transformers' CLIP image
processor (its PIL backend, the one ``ClipEmbedder`` loads) step by step: RGB with transparency
composited onto white, the shorter side resized on uint8 pixels, a centre crop (zero-padded when
the image is smaller), rescale in float64, normalise in float32, channels first. Any deviation
shifts every vector, so tests/model/test_preprocess.py holds it against transformers pixel for
pixel.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

Pixels = npt.NDArray[np.float32]

# transformers' defaults for a CLIP image processor, used for keys a config leaves out.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULTS: dict[str, Any] = {
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "resample": int(Image.Resampling.BICUBIC),
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": OPENAI_CLIP_MEAN,
    "image_std": OPENAI_CLIP_STD,
}
# SigLIP's image processor (SigLIP and SigLIP 2 fixed-resolution): a plain resize to the square
# input, no crop, mean and std 0.5.
SIGLIP_DEFAULTS: dict[str, Any] = {
    **DEFAULTS,
    "size": {"height": 224, "width": 224},
    "do_center_crop": False,
    "image_mean": (0.5, 0.5, 0.5),
    "image_std": (0.5, 0.5, 0.5),
}


class Preprocessing(Protocol):
    """Pictures to a vision tower's input: transformers' processors (``ImageSpec``) or
    open_clip's transform (``preprocess_open_clip.OpenClipSpec``)."""

    @property
    def output_size(self) -> tuple[int, int]: ...

    def pixels(self, images: Sequence[Image.Image]) -> Pixels: ...


def read_preprocessing(path: Path) -> Preprocessing:
    """The preprocessing an export's ``preprocessor_config.json`` describes; ``ValueError`` for
    one we cannot reproduce."""
    from image_search.model import preprocess_open_clip

    config = json.loads(path.read_text())
    # transformers 5 saves the image processor inside processor_config.json.
    config = config.get("image_processor", config)
    if config.get("image_processor_type") == preprocess_open_clip.PROCESSOR_TYPE:
        return preprocess_open_clip.OpenClipSpec.from_config(config)
    return ImageSpec.from_config(config)


@dataclass(frozen=True)
class ImageSpec:
    """What the vision tower expects; ``pixels`` turns pictures into its input."""

    shortest_edge: int | None  # resize so the shorter side has this length
    resize_to: tuple[int, int] | None  # or resize to exactly (height, width)
    resample: int
    crop: tuple[int, int] | None  # (height, width)
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_file(cls, path: Path) -> ImageSpec:
        config = json.loads(path.read_text())
        # transformers 5 saves the image processor inside processor_config.json.
        return cls.from_config(config.get("image_processor", config))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ImageSpec:
        """Read a transformers image-processor config; ``ValueError`` for what we cannot mirror."""
        family = str(config.get("image_processor_type", ""))
        defaults = SIGLIP_DEFAULTS if family.startswith("Siglip") else DEFAULTS
        c = {**defaults, **{k: v for k, v in config.items() if v is not None}}
        if c.get("do_pad"):
            raise ValueError("padding image processors are not supported")
        shortest, exact = None, None
        if c["do_resize"]:
            size = c["size"]
            if isinstance(size, int):  # legacy configs: an int is the shorter side for CLIP
                size = {"shortest_edge": size}
            if set(size) == {"shortest_edge"}:
                shortest = int(size["shortest_edge"])
            elif set(size) == {"height", "width"}:
                exact = (int(size["height"]), int(size["width"]))
            else:
                raise ValueError(f"unsupported resize {size}")
        crop = None
        if c["do_center_crop"]:
            crop_size = c["crop_size"]
            if isinstance(crop_size, int):
                crop_size = {"height": crop_size, "width": crop_size}
            crop = (int(crop_size["height"]), int(crop_size["width"]))
        if crop is None and exact is None:
            raise ValueError("the preprocessing does not give images of one size")
        return cls(
            shortest_edge=shortest,
            resize_to=exact,
            resample=int(c["resample"]),
            crop=crop,
            rescale=float(c["rescale_factor"]) if c["do_rescale"] else None,
            mean=tuple(map(float, c["image_mean"])) if c["do_normalize"] else None,
            std=tuple(map(float, c["image_std"])) if c["do_normalize"] else None,
        )

    @property
    def output_size(self) -> tuple[int, int]:
        size = self.crop or self.resize_to
        assert size is not None  # from_config guarantees one of them
        return size

    def pixels(self, images: Sequence[Image.Image]) -> Pixels:
        """A (n, 3, height, width) float32 batch."""
        height, width = self.output_size
        if not images:
            return np.zeros((0, 3, height, width), dtype=np.float32)
        return np.stack([self.one(image) for image in images])

    def one(self, image: Image.Image) -> Pixels:
        rgb = to_rgb(image)
        target = self._resized_size(rgb.size)
        if target is not None:
            rgb = rgb.resize(target, resample=self.resample)  # PIL takes (width, height)
        array: npt.NDArray[Any] = np.asarray(rgb)  # (height, width, 3) uint8
        if self.crop is not None:
            array = centre_crop(array, self.crop)
        if self.rescale is not None:
            # float64 first, as transformers does, so the rounding is the same.
            array = (array.astype(np.float64) * self.rescale).astype(np.float32)
        else:
            array = array.astype(np.float32)
        if self.mean is not None and self.std is not None:
            mean = np.asarray(self.mean, dtype=np.float32)
            std = np.asarray(self.std, dtype=np.float32)
            array = (array - mean) / std
        return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)

    def _resized_size(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """(width, height) after the resize step, or None when it is switched off."""
        if self.resize_to is not None:
            return self.resize_to[1], self.resize_to[0]
        if self.shortest_edge is None:
            return None
        width, height = size
        short, long = (width, height) if width <= height else (height, width)
        # Same expression as transformers (truncation, not rounding) so sizes agree to the pixel.
        new_long = int(self.shortest_edge * long / short)
        if width <= height:
            return self.shortest_edge, new_long
        return new_long, self.shortest_edge


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (not dropped to whatever lies below)."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def centre_crop(array: npt.NDArray[Any], size: tuple[int, int]) -> npt.NDArray[Any]:
    """The centre (height, width) of an (h, w, c) array; zero padding where it is smaller."""
    crop_h, crop_w = size
    height, width = array.shape[:2]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    if top >= 0 and left >= 0:
        return array[top : top + crop_h, left : left + crop_w]
    # Pad to at least the crop, centred with the extra pixel (if odd) before the image.
    padded_h, padded_w = max(crop_h, height), max(crop_w, width)
    pad_top, pad_left = math.ceil((padded_h - height) / 2), math.ceil((padded_w - width) / 2)
    canvas = np.zeros((padded_h, padded_w, *array.shape[2:]), dtype=array.dtype)
    canvas[pad_top : pad_top + height, pad_left : pad_left + width] = array
    top, left = top + pad_top, left + pad_left
    return canvas[max(0, top) : top + crop_h, max(0, left) : left + crop_w]
