"""CLIP's preprocessing in PIL + numpy against transformers' own processor, pixel for pixel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from image_search.model.preprocess import ImageSpec
from tests.support.pictures import MODES, SIZES, picture

PREPROCESSORS: dict[str, dict[str, Any]] = {
    "vit-b32 (defaults)": {},
    "tiny": {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},
    "bilinear, crop beyond resize": {
        "size": {"shortest_edge": 20},
        "crop_size": {"height": 32, "width": 28},
        "resample": 2,
    },
    "exact size, no crop": {"size": {"height": 30, "width": 40}, "do_center_crop": False},
    "no rescale": {
        "size": {"shortest_edge": 32},
        "crop_size": {"height": 32, "width": 32},
        "do_rescale": False,
        "image_mean": [100, 110, 120],
        "image_std": [60, 50, 40],
    },
}


@pytest.mark.parametrize("name", PREPROCESSORS)
def test_preprocessing_matches_transformers(name: str) -> None:
    from transformers import CLIPImageProcessorPil

    config = PREPROCESSORS[name]
    reference, ours = CLIPImageProcessorPil(**config), ImageSpec.from_config(config)
    pictures = [
        picture(seed, size, mode)
        for seed, (size, mode) in enumerate((s, m) for s in SIZES for m in MODES)
    ]
    expected = reference(images=pictures, return_tensors="np")["pixel_values"]
    got = ours.pixels(pictures)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_preprocessing_reads_the_exported_config_like_transformers(exported: Path) -> None:
    from transformers import CLIPImageProcessorPil

    path = exported / "preprocessor_config.json"
    reference = CLIPImageProcessorPil(**json.loads(path.read_text()))
    pictures = [picture(seed, (57, 23), "RGB") for seed in range(3)]
    np.testing.assert_array_equal(
        ImageSpec.from_file(path).pixels(pictures),
        reference(images=pictures, return_tensors="np")["pixel_values"],
    )


@pytest.mark.parametrize(
    "config",
    [
        {"do_pad": True},
        {"size": {"shortest_edge": 224, "longest_edge": 300}},
        {"do_center_crop": False},  # images of every size would reach the model
    ],
)
def test_preprocessing_it_cannot_mirror_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ImageSpec.from_config(config)
