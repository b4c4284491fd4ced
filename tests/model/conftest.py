"""The tiny CLIP's ONNX export, made once per session through the product's export."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_search.model.export import export
from image_search.model.onnx_embedder import OnnxEmbedder


@pytest.fixture(scope="session")
def exported(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("exports") / "tiny-onnx"
    export(str(tiny_model), str(target), cache_dir=tmp_path_factory.mktemp("export-cache"))
    return target


@pytest.fixture(scope="session")
def onnx(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    cache = tmp_path_factory.mktemp("onnx-cache")
    return OnnxEmbedder(source=str(exported), batch_size=4, cache_dir=cache).load()
