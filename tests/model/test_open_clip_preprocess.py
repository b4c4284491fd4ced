"""open_clip's transform, reproduced without torch: the same float32 pixels as open_clip's own
``image_transform`` (torchvision) for every size, shape, Pillow mode and setting it is given."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from image_search.model.preprocess_open_clip import OpenClipSpec

pytestmark = pytest.mark.open_clip
# Skips this module where open_clip is absent (the default venv): `make test-open-clip` runs it.
support = pytest.importorskip("tests.support.open_clip")

SIZES = [(1, 1), (2, 3), (7, 255), (255, 257), (256, 256), (257, 255), (640, 480), (480, 640)]
SIZES += [(1000, 21), (21, 1000), (333, 334), (513, 260)]
MODES = ["RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr", "1", "I", "F", "HSV"]
SETTINGS = [
    {"resize_mode": "shortest", "interpolation": "bicubic"},
    {"resize_mode": "shortest", "interpolation": "bilinear", "mean": (0.0,) * 3, "std": (1.0,) * 3},
    {"resize_mode": "squash", "interpolation": "bilinear", "mean": (0.5,) * 3, "std": (0.5,) * 3},
]


def _picture(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgba = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    return rgba if mode == "RGBA" else rgba.convert(mode)


@pytest.mark.parametrize(
    "setting", SETTINGS, ids=lambda s: f"{s['resize_mode']}-{s['interpolation']}"
)
def test_pixels_equal_open_clips_transform(setting: dict[str, object]) -> None:

    config = {
        "size": 64,
        "mean": support.open_clip.OPENAI_DATASET_MEAN,
        "std": support.open_clip.OPENAI_DATASET_STD,
    }
    config |= setting
    reference = support.open_clip.image_transform(
        64,
        is_train=False,
        mean=config["mean"],
        std=config["std"],
        resize_mode=config["resize_mode"],
        interpolation=config["interpolation"],
    )
    ours = OpenClipSpec.from_config(config)
    for seed, (size, mode) in enumerate(itertools.product(SIZES, MODES)):
        picture = _picture(size, mode, seed)
        expected = reference(picture).numpy()
        got = ours.pixels([picture])[0]
        assert got.dtype == np.float32 and got.shape == expected.shape == (3, 64, 64)
        assert np.array_equal(got, expected), (size, mode)


def test_the_models_own_config_round_trips(open_clip_export) -> None:  # type: ignore[no-untyped-def]
    """What the export wrote is what open_clip's model was configured with."""
    import json

    model = support.open_clip.create_model(support.REDUCED, pretrained=None)
    written = json.loads((open_clip_export / "preprocessor_config.json").read_text())
    assert OpenClipSpec.from_config(written) == OpenClipSpec.from_config(
        model.visual.preprocess_cfg
    )
