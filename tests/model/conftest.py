"""The ONNX embedder over the tiny CLIP's export (the ``exported`` fixture, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_search.model.onnx_embedder import OnnxEmbedder


@pytest.fixture(scope="session")
def onnx(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    cache = tmp_path_factory.mktemp("onnx-cache")
    return OnnxEmbedder(source=str(exported), batch_size=4, cache_dir=cache).load()
