"""``export --model open_clip:ARCH``: the one serving format, vectors within 1e-4 of open_clip's
on both towers, and an identity that names the weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from image_search.errors import ConfigError
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.onnx_manifest import OPEN_CLIP_FORMAT, read_manifest
from tests.support.factories import random_image

pytestmark = pytest.mark.open_clip
# Skips this module where open_clip is absent (the default venv): `make test-open-clip` runs it.
support = pytest.importorskip("tests.support.open_clip")

TEXTS = ["a dog on a beach", "", "don’t", "Ünïcödé & emoji 🐶", "long " * 90]


def _theirs(open_clip_export: Path, texts: list[str], pictures: list) -> list[np.ndarray]:  # type: ignore[type-arg]
    """open_clip's own vectors: its tokenizer, its transform, its model (the exported weights)."""
    import torch

    weights = open_clip_export.parent / "weights.pt"
    model, _, transform = support.open_clip.create_model_and_transforms(
        support.REDUCED, pretrained=str(weights)
    )
    tokenizer = support.open_clip.get_tokenizer(support.REDUCED)
    with torch.inference_mode():
        text = model.eval().encode_text(tokenizer(texts), normalize=True).numpy()
        image = model.encode_image(torch.stack([transform(p) for p in pictures]), normalize=True)
    return [text, image.numpy()]


def test_both_towers_match_open_clip(open_clip_export: Path) -> None:
    pictures = [
        random_image(seed, size=size)
        for seed, size in enumerate([(640, 480), (90, 300), (256, 256), (5, 1)])
    ]
    embedder = OnnxEmbedder(source=str(open_clip_export), cache_dir=open_clip_export).load()
    ours = [embedder.embed_texts(TEXTS), embedder.embed_images(pictures)]
    for a, b in zip(ours, _theirs(open_clip_export, TEXTS, pictures), strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4


def test_the_export_is_the_serving_format(open_clip_export: Path) -> None:
    manifest = read_manifest(open_clip_export)
    digest = hashlib.sha256((open_clip_export.parent / "weights.pt").read_bytes()).hexdigest()
    assert manifest.identity == f"open_clip:MobileCLIP2-S0-reduced@sha256:{digest}"
    assert manifest.format == OPEN_CLIP_FORMAT and manifest.family == "open_clip"
    assert (manifest.pad_to, manifest.pad_id, manifest.text_clean) == (77, 0, "open_clip")
    # tokenizer.json loads in `tokenizers` alone, and is open_clip's for ordinary text.
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(open_clip_export / "tokenizer.json"))
    assert tokenizer.encode("A photo of a CAT").ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    config = json.loads((open_clip_export / "preprocessor_config.json").read_text())
    assert config["image_processor_type"] == "OpenClipTransform" and config["size"] == [256, 256]


def test_an_int8_copy_quantises_like_any_export(open_clip_export: Path, tmp_path: Path) -> None:
    from image_search.model.quantize import quantise_export

    manifest = quantise_export(open_clip_export, tmp_path)
    assert manifest.identity.endswith("#int8") and manifest.text_clean == "open_clip"
    int8 = OnnxEmbedder(source=str(tmp_path), cache_dir=tmp_path).load()
    fp32 = OnnxEmbedder(source=str(open_clip_export), cache_dir=tmp_path).load()
    agreement = (int8.embed_texts(TEXTS) * fp32.embed_texts(TEXTS)).sum(axis=1)
    assert agreement.min() > 0.9


def test_identity_names_the_weights(tmp_path: Path) -> None:
    from image_search.model.export_open_clip import identify

    assert (
        identify("MobileCLIP2-S0", weights="dfndr2b").identity == "open_clip:MobileCLIP2-S0@dfndr2b"
    )
    hub = identify("hf-hub:timm/MobileCLIP2-S0-OpenCLIP", weights=None)
    assert hub.identity == "open_clip:hf-hub:timm/MobileCLIP2-S0-OpenCLIP"
    folder = tmp_path / "MobileCLIP2-S0-OpenCLIP"
    folder.mkdir()
    (folder / "open_clip_model.safetensors").write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    named = identify(f"local-dir:{folder}", weights=None)
    assert named.identity == f"open_clip:MobileCLIP2-S0-OpenCLIP@sha256:{digest}"


@pytest.mark.parametrize(
    ("name", "weights", "says"),
    [
        ("MobileCLIP2-S0", None, "dfndr2b"),  # no weights: the tags it could have
        ("NoSuchModel", "x", "no model 'NoSuchModel'"),
        ("", "x", "open_clip:MobileCLIP2-S0"),
        ("hf-hub:timm/MobileCLIP2-S0-OpenCLIP", "x", "leave out --weights"),
    ],
)
def test_a_wrong_name_or_weights_says_what_to_give(
    name: str, weights: str | None, says: str
) -> None:
    from image_search.model.export_open_clip import identify

    with pytest.raises(ConfigError, match=says):
        identify(name, weights=weights)


def test_the_cli_exports_and_says_how_to_serve(
    open_clip_export: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    from image_search.cli import main

    weights = open_clip_export.parent / "weights.pt"
    out = tmp_path / "cli"
    args = ["export", "--model", f"open_clip:{support.REDUCED}", "--weights", str(weights)]
    assert main([*args, "--output", str(out)]) == 0
    assert f"serve it with IMAGE_SEARCH_MODEL={out}" in capsys.readouterr().out
    assert read_manifest(out).identity == read_manifest(open_clip_export).identity


@pytest.mark.slow
def test_the_real_mobileclip2_s0_matches_open_clip(tmp_path: Path) -> None:
    """The full-size architecture (random weights): 45 + 254 MB of towers, ~1 min here."""
    import torch

    from image_search.model.export import export

    weights = support.save_random_weights(support.ARCH, tmp_path / "weights.pt", seed=3)
    manifest = export(
        f"open_clip:{support.ARCH}", str(tmp_path / "out"), cache_dir=tmp_path, weights=str(weights)
    )
    assert manifest.dim == 512 and manifest.image_size == 256
    embedder = OnnxEmbedder(source=str(tmp_path / "out"), cache_dir=tmp_path).load()
    pictures = [random_image(seed, size=(500, 375)) for seed in range(3)]
    model, _, transform = support.open_clip.create_model_and_transforms(
        support.ARCH, pretrained=str(weights)
    )
    tokenizer = support.open_clip.get_tokenizer(support.ARCH)
    with torch.inference_mode():
        text = model.eval().encode_text(tokenizer(TEXTS), normalize=True).numpy()
        image = model.encode_image(torch.stack([transform(p) for p in pictures]), normalize=True)
    assert np.abs(embedder.embed_texts(TEXTS) - text).max() <= 1e-4
    assert np.abs(embedder.embed_images(pictures) - image.numpy()).max() <= 1e-4
