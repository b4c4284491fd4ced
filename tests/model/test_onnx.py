"""The ONNX runtime against the torch one: preprocessing, tokens and vectors, on the tiny CLIP."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from image_search.errors import ConfigError, ModelLoadError
from image_search.model.embedder import ClipEmbedder
from image_search.model.export import export
from image_search.model.onnx_embedder import OnnxEmbedder
from image_search.model.onnx_manifest import MANIFEST, find_export
from image_search.model.preprocess import ImageSpec
from tests.support.factories import random_image

TOLERANCE = 1e-4  # per component, between the runtimes (the bound)
TEXTS = [
    "a red car in the city",
    "",
    "   Spaces\tand\nNEWLINES   ",
    "日本の猫 🐱 café naïve",
    "word " * 200,  # truncated to 77 tokens by both
    "a dog",
    "!!! ??? ... 1234567890",
    "x",
    "a photo of a cat sitting on a wall",
    "Ünïcödé façade",
]
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


# ---- preprocessing -----------------------------------------------------------------------------

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


# ---- vectors -----------------------------------------------------------------------------------


def test_tokens_match_transformers(onnx: OnnxEmbedder, embedder: ClipEmbedder) -> None:
    reference = embedder._processor.tokenizer(
        TEXTS, padding=True, truncation=True, max_length=embedder.max_text_tokens
    )
    encodings = onnx._model.tokenizer.encode_batch(TEXTS)
    assert [e.ids for e in encodings] == reference["input_ids"]
    assert [e.attention_mask for e in encodings] == reference["attention_mask"]


def test_text_vectors_match_torch(onnx: OnnxEmbedder, embedder: ClipEmbedder) -> None:
    ours, theirs = onnx.embed_texts(TEXTS), embedder.embed_texts(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), onnx.dim) == theirs.shape
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE)


def test_image_vectors_match_torch(onnx: OnnxEmbedder, embedder: ClipEmbedder) -> None:
    pictures = [picture(seed, SIZES[seed % len(SIZES)], mode) for seed, mode in enumerate(MODES)]
    ours, theirs = onnx.embed_images(pictures), embedder.embed_images(pictures)
    assert ours.dtype == np.float32 and ours.shape == (len(MODES), onnx.dim) == theirs.shape
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE)


def test_identity_is_the_source_model(onnx: OnnxEmbedder, tiny_model: Path) -> None:
    assert onnx.identity == str(tiny_model) != onnx.source
    assert onnx.dim == 16 and onnx.max_text_tokens == 77


def test_empty_input_gives_an_empty_matrix(onnx: OnnxEmbedder) -> None:
    assert onnx.embed_texts([]).shape == (0, onnx.dim)
    assert onnx.embed_images([]).shape == (0, onnx.dim)


def test_concurrent_calls_give_the_sequential_answers(onnx: OnnxEmbedder) -> None:
    pictures = [random_image(seed) for seed in range(6)]
    expected_texts, expected_images = onnx.embed_texts(TEXTS), onnx.embed_images(pictures)
    failures: list[str] = []

    def work() -> None:
        for _ in range(3):
            if not np.array_equal(onnx.embed_texts(TEXTS), expected_texts):
                failures.append("texts")
            if not np.array_equal(onnx.embed_images(pictures), expected_images):
                failures.append("images")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# ---- the export directory ----------------------------------------------------------------------


def test_manifest_names_the_source_its_dim_and_files(exported: Path, tiny_model: Path) -> None:
    manifest = json.loads((exported / MANIFEST).read_text())
    assert manifest["source"] == str(tiny_model) and manifest["dim"] == 16
    assert manifest["opset"] == 17 and 0 <= manifest["max_abs_error"] <= TOLERANCE
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        [MANIFEST, *manifest["files"].values()]
    )
    # Readable by every user: the Lambda runtime is not the user that built the image.
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in [exported, *exported.iterdir()])


def test_an_export_beside_the_model_is_found(
    tiny_model: Path, exported: Path, tmp_path: Path, onnx: OnnxEmbedder
) -> None:
    import shutil

    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    shutil.copytree(exported, model / "onnx")
    assert find_export(model) == model / "onnx" and find_export(tiny_model) is None
    beside = OnnxEmbedder(source=str(model), cache_dir=tmp_path)
    np.testing.assert_array_equal(beside.embed_texts(["cat"]), onnx.embed_texts(["cat"]))


def test_a_torch_model_is_not_an_export_and_the_error_says_how(
    tiny_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match="python -m image_search export"):
        OnnxEmbedder(source=str(tiny_model), cache_dir=tmp_path).load()


def test_an_incomplete_or_newer_export_is_refused(exported: Path, tmp_path: Path) -> None:
    import shutil

    partial = Path(shutil.copytree(exported, tmp_path / "partial"))
    (partial / "vision.onnx").unlink()
    with pytest.raises(ModelLoadError, match="incomplete.*vision.onnx"):
        OnnxEmbedder(source=str(partial), cache_dir=tmp_path).load()
    newer = Path(shutil.copytree(exported, tmp_path / "newer"))
    manifest = json.loads((newer / MANIFEST).read_text())
    (newer / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(ModelLoadError, match="export the model again"):
        OnnxEmbedder(source=str(newer), cache_dir=tmp_path).load()


def test_export_replaces_an_earlier_export_but_nothing_else(
    tiny_model: Path, exported: Path, tmp_path: Path
) -> None:
    import shutil

    again = Path(shutil.copytree(exported, tmp_path / "again"))
    (again / "stale.txt").write_text("left by an earlier export")
    export(str(tiny_model), str(again), cache_dir=tmp_path / "cache")
    assert not (again / "stale.txt").exists() and (again / MANIFEST).is_file()
    with pytest.raises(ConfigError, match="not an earlier export"):
        export(str(tiny_model), str(tiny_model), cache_dir=tmp_path / "cache")
    assert (tiny_model / "model.safetensors").is_file()


def test_export_refuses_to_write_what_does_not_match_torch(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faithful = ImageSpec.one
    # A preprocessing bug: every picture mirrored, which the model's vectors notice.
    monkeypatch.setattr(ImageSpec, "one", lambda self, image: faithful(self, image)[:, :, ::-1])
    with pytest.raises(ModelLoadError, match="differs from torch"):
        export(str(tiny_model), str(tmp_path / "out"), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".partial")] == []
