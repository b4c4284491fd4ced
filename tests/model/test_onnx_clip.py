"""The ONNX runtime against the torch one: tokens and vectors, on the tiny CLIP."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.torch_clip import ClipEmbedder
from tests.support.factories import random_image
from tests.support.pictures import MODES, SIZES, picture

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


def test_tokens_match_transformers(onnx: OnnxEmbedder, embedder: ClipEmbedder) -> None:
    reference = embedder._processor.tokenizer(
        TEXTS, padding=True, truncation=True, max_length=embedder.max_text_tokens
    )
    encodings = onnx._text_tower().tokenizer.encode_batch(TEXTS)
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


# ---- a tampered manifest is refused at load, not served ---------------------------------------


def tampered(exported: Path, tmp_path: Path, **changes: object) -> Path:
    """A copy of the export whose export.json says ``changes`` (the ONNX files untouched)."""
    import json
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(exported, copy)
    manifest = json.loads((copy / "export.json").read_text())
    for name, value in changes.items():
        if name.startswith("files."):
            manifest.setdefault("files", {})[name.removeprefix("files.")] = value
        else:
            manifest[name] = value
    (copy / "export.json").write_text(json.dumps(manifest))
    return copy


def test_a_manifest_claiming_another_dim_is_refused_at_load(exported, tmp_path) -> None:
    import pytest

    from image_search.errors import ModelLoadError

    wrong = tampered(exported, tmp_path, dim=768)
    with pytest.raises(ModelLoadError, match="vectors but export.json says dim 768"):
        OnnxEmbedder(source=str(wrong), cache_dir=tmp_path / "cache").load_text()
    with pytest.raises(ModelLoadError, match="dim 768"):
        OnnxEmbedder(source=str(wrong), cache_dir=tmp_path / "cache").load()


def test_a_manifest_promising_more_tokens_than_the_model_takes_is_refused(
    exported, tmp_path
) -> None:
    import pytest

    from image_search.errors import ModelLoadError

    wrong = tampered(exported, tmp_path, max_text_tokens=300)
    with pytest.raises(ModelLoadError, match="does not take"):
        OnnxEmbedder(source=str(wrong), cache_dir=tmp_path / "cache").load_text()


def test_a_manifest_naming_files_outside_its_directory_is_refused(exported, tmp_path) -> None:
    import pytest

    from image_search.errors import ModelLoadError

    (tmp_path / "elsewhere.onnx").write_bytes((exported / "text.onnx").read_bytes())
    wrong = tampered(exported, tmp_path, **{"files.text": "../elsewhere.onnx"})
    with pytest.raises(ModelLoadError, match="outside its directory"):
        OnnxEmbedder(source=str(wrong), cache_dir=tmp_path / "cache").load_text()


def test_a_damaged_tokenizer_or_text_model_is_a_load_error_either_way(exported, tmp_path) -> None:
    """The text session opens in a thread while the tokenizer is read: a failure of either one
    is still the one ModelLoadError, whichever finishes first."""
    import json

    import pytest

    from image_search.errors import ModelLoadError

    broken_tokenizer = tampered(exported, tmp_path / "tokenizer")
    (broken_tokenizer / "tokenizer.json").write_text('{"not": "a tokenizer"')
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer"):
        OnnxEmbedder(source=str(broken_tokenizer), cache_dir=tmp_path / "cache").load_text()

    broken_model = tampered(exported, tmp_path / "model")
    manifest = json.loads((broken_model / "export.json").read_text())
    (broken_model / manifest["files"]["text"]).write_bytes(b"not an onnx graph")
    with pytest.raises(ModelLoadError, match="cannot load the ONNX export"):
        OnnxEmbedder(source=str(broken_model), cache_dir=tmp_path / "cache").load_text()
