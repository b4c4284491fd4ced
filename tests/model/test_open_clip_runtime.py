"""What serving an open_clip export needs, without open_clip: its text cleaning and its
preprocessing config (the parity with open_clip itself runs in test_open_clip_*.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from image_search.model.preprocess import ImageSpec, read_preprocessing
from image_search.model.preprocess_open_clip import OpenClipSpec
from image_search.model.text_clean import cleaner


def test_open_clips_cleaning_repairs_what_phones_and_pages_type() -> None:
    clean = cleaner("open_clip")
    assert clean is not None and cleaner("none") is None
    assert clean("  Don’t  &amp;amp;\tＦＵＬＬ ﬁsh ") == "don't & full fish"
    assert clean("a\u0345b") == "a b"  # a word boundary, as open_clip's pattern makes it


def test_the_export_config_picks_open_clips_transform(tmp_path: Path) -> None:
    spec = OpenClipSpec((256, 256), "shortest", "bilinear", (0.0,) * 3, (1.0,) * 3)
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps(spec.to_config()))
    assert read_preprocessing(path) == spec
    path.write_text(json.dumps({"image_processor_type": "CLIPImageProcessorPil"}))
    assert isinstance(read_preprocessing(path), ImageSpec)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"resize_mode": "longest"}, "not supported"),
        ({"size": [256, 192]}, "non-square"),
        ({"interpolation": "nearest"}, "not supported"),
        ({"std": [1.0, 0.0, 1.0]}, "deviation of 0"),
        ({"mean": [0.5, 0.5]}, "3 channel"),
    ],
)
def test_a_transform_we_cannot_reproduce_is_refused(change: dict[str, object], says: str) -> None:
    config = OpenClipSpec((256, 256), "shortest", "bicubic", (0.5,) * 3, (0.5,) * 3).to_config()
    with pytest.raises(ValueError, match=says):
        OpenClipSpec.from_config(config | change)
