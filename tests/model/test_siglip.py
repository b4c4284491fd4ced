"""SigLIP through the one export: a reduced SiglipModel with random weights and a SigLIP 2-format
tokenizer trained here (none is available offline; tests/support/siglip.py). Tokens, pixels and
vectors of the ONNX runtime against transformers' own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from image_search.errors import ModelLoadError
from image_search.model.export import export
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.onnx_manifest import MANIFEST
from image_search.model.preprocess import ImageSpec
from image_search.model.torch_clip import ClipEmbedder
from tests.model.test_onnx_clip import TEXTS
from tests.support.pictures import MODES, SIZES, picture
from tests.support.siglip import SIGLIP2_BASE_TEXT, SIGLIP2_BASE_VISION, save_tiny_siglip

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_siglip(tmp_path_factory.mktemp("siglip") / "model")


@pytest.fixture(scope="module")
def reference(siglip: Path) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoProcessor

    return AutoModel.from_pretrained(siglip).eval(), AutoProcessor.from_pretrained(siglip)


@pytest.fixture(scope="module")
def runtime(siglip: Path, tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    target = tmp_path_factory.mktemp("siglip-onnx") / "export"
    export(str(siglip), str(target), cache_dir=target.parent / "cache")
    return OnnxEmbedder(source=str(target), batch_size=4, cache_dir=target.parent).load()


def torch_vectors(reference: tuple[Any, Any], *, texts=None, images=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    model, processor = reference
    with torch.inference_mode():
        if texts is not None:
            inputs = processor.tokenizer(
                texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt"
            )
            out = model.get_text_features(**inputs)
        else:
            out = model.get_image_features(**processor.image_processor(images, return_tensors="pt"))
    features = getattr(out, "pooler_output", out).numpy()
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def test_the_manifest_records_siglip_padding(runtime: OnnxEmbedder, siglip: Path) -> None:
    directory = Path(runtime.source)
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["family"] == "siglip" and manifest["format"] == 2
    assert manifest["pad_to"] == 64 and manifest["pad_side"] == "left"
    assert manifest["max_abs_error"] <= TOLERANCE and runtime.identity == str(siglip)


def test_tokens_match_the_siglip_tokenizer(runtime: OnnxEmbedder, reference) -> None:  # type: ignore[no-untyped-def]
    expected = reference[1].tokenizer(TEXTS, padding="max_length", max_length=64, truncation=True)
    encodings = runtime._text_tower().tokenizer.encode_batch(TEXTS)
    assert [e.ids for e in encodings] == expected["input_ids"]
    assert all(len(e.ids) == 64 for e in encodings)  # fixed length, whatever the text


def test_text_and_image_vectors_match_torch(runtime: OnnxEmbedder, reference) -> None:  # type: ignore[no-untyped-def]
    ours = runtime.embed_texts(TEXTS)
    np.testing.assert_allclose(ours, torch_vectors(reference, texts=TEXTS), rtol=0, atol=TOLERANCE)
    pictures = [picture(seed, SIZES[seed % len(SIZES)], "RGB") for seed in range(len(MODES))]
    ours = runtime.embed_images(pictures)
    theirs = torch_vectors(reference, images=pictures)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"size": {"height": 32, "width": 32}},
        {"size": {"height": 30, "width": 40}, "resample": 2},
    ],
    ids=["siglip-224", "tiny", "bilinear-oblong"],
)
def test_preprocessing_matches_the_siglip_processor(config: dict[str, Any]) -> None:
    from transformers import SiglipImageProcessorPil

    reference = SiglipImageProcessorPil(**config)
    spec = ImageSpec.from_config(json.loads(reference.to_json_string()))
    pictures = [
        picture(seed, size, mode)
        for seed, (size, mode) in enumerate((s, m) for s in SIZES for m in MODES)
    ]
    expected = reference(images=pictures, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(spec.pixels(pictures), expected, rtol=0, atol=1e-6)


def test_the_torch_runtime_sends_siglip_to_its_export(siglip: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="serves from its ONNX export"):
        ClipEmbedder(source=str(siglip), cache_dir=tmp_path).load()


@pytest.mark.slow
def test_siglip2_base_at_full_size_matches_torch(tmp_path: Path) -> None:
    """The real architecture's size (the ~1.1 GB text tower), random weights: the export's own
    check holds it to 1e-4 of torch; here the vectors are compared again, texts and images."""
    from transformers import AutoModel, AutoProcessor

    model = save_tiny_siglip(tmp_path / "base", text=SIGLIP2_BASE_TEXT, vision=SIGLIP2_BASE_VISION)
    manifest = export(str(model), str(tmp_path / "export"), cache_dir=tmp_path / "cache")
    assert manifest.dim == 768 and manifest.max_abs_error is not None
    assert manifest.max_abs_error <= TOLERANCE
    runtime = OnnxEmbedder(source=str(tmp_path / "export"), cache_dir=tmp_path).load()
    reference = AutoModel.from_pretrained(model).eval(), AutoProcessor.from_pretrained(model)
    texts = TEXTS[:4]
    np.testing.assert_allclose(
        runtime.embed_texts(texts), torch_vectors(reference, texts=texts), rtol=0, atol=TOLERANCE
    )
    pictures = [picture(seed, (640, 480), "RGB") for seed in range(2)]
    np.testing.assert_allclose(
        runtime.embed_images(pictures),
        torch_vectors(reference, images=pictures),
        rtol=0,
        atol=TOLERANCE,
    )
