"""The embedder on a tiny random CLIP loaded through the production path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from image_search.errors import ModelLoadError
from image_search.model.torch_clip import ClipEmbedder
from tests.support.factories import random_image


def test_text_vectors_match_the_model_forward_pass(embedder: ClipEmbedder) -> None:
    texts = ["a red car in the city", "dog", "日本の猫 🐱"]
    ours = embedder.embed_texts(texts)
    model, processor = embedder._model, embedder._processor
    inputs = processor(text=texts, images=[random_image(0)], return_tensors="pt", padding=True)
    with torch.inference_mode():
        reference = model(**inputs).text_embeds.numpy()
    assert ours.dtype == np.float32 and ours.shape == (3, embedder.dim)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_image_vectors_match_the_model_forward_pass(embedder: ClipEmbedder) -> None:
    pictures = [random_image(seed) for seed in range(11)]  # more than one batch of 8
    ours = embedder.embed_images(pictures)
    model, processor = embedder._model, embedder._processor
    inputs = processor(text=["x"], images=pictures, return_tensors="pt", padding=True)
    with torch.inference_mode():
        reference = model(**inputs).image_embeds.numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_long_text_is_truncated_not_rejected(embedder: ClipEmbedder) -> None:
    assert embedder.embed_texts(["word " * 500]).shape == (1, embedder.dim)


def test_empty_input_gives_an_empty_matrix(embedder: ClipEmbedder) -> None:
    assert embedder.embed_images([]).shape == (0, embedder.dim)


def test_missing_model_says_how_to_fix_it(tmp_path: Path) -> None:
    broken = ClipEmbedder(source=str(tmp_path / "no-such-model"), cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="IMAGE_SEARCH_MODEL"):
        broken.load()


def test_model_loads_from_an_s3_directory(
    tiny_model: Path, client, bucket: str, tmp_path: Path, embedder: ClipEmbedder
) -> None:
    for path in tiny_model.iterdir():
        client.upload_file(str(path), bucket, f"models/tiny/{path.name}")
    from_s3 = ClipEmbedder(
        source=f"s3://{bucket}/models/tiny/", cache_dir=tmp_path / "cache"
    ).load()
    np.testing.assert_allclose(
        from_s3.embed_texts(["cat"]), embedder.embed_texts(["cat"]), atol=1e-6
    )
    assert (tmp_path / "cache" / bucket / "models/tiny/config.json").is_file()
