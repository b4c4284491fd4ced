"""Choosing the runtime: once, from the settings and what the model directory holds."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from image_search.config import Settings
from image_search.errors import ConfigError
from image_search.model.factory import choose_runtime, embedder_for
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.torch_clip import ClipEmbedder


def runtime(source: Path | str, tmp_path: Path, *, setting: str = "auto", device: str = "auto"):  # type: ignore[no-untyped-def]
    return choose_runtime(str(source), runtime=setting, device=device, cache_dir=tmp_path)


def test_auto_picks_onnx_for_an_export_or_a_model_with_one_beside_it(
    exported: Path, tiny_model: Path, tmp_path: Path
) -> None:
    assert runtime(exported, tmp_path) == "onnx"
    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    shutil.copytree(exported, model / "onnx")
    assert runtime(model, tmp_path) == "onnx"
    assert runtime(model, tmp_path, setting="torch") == "torch"


def test_auto_keeps_torch_for_a_plain_model_and_says_how_to_export(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="image_search.model.factory"):
        assert runtime(tiny_model, tmp_path) == "torch"
        assert runtime("openai/clip-vit-base-patch32", tmp_path) == "torch"
    hints = [r.getMessage() for r in caplog.records if "python -m image_search export" in r.message]
    assert len(hints) == 2


def test_gpu_builds_keep_torch(exported: Path, tmp_path: Path) -> None:
    assert runtime(exported, tmp_path, device="cuda") == "torch"
    with pytest.raises(ConfigError, match="IMAGE_SEARCH_RUNTIME=torch"):
        runtime(exported, tmp_path, setting="onnx", device="cuda")


def test_settings_choose_the_embedder(exported: Path, tiny_model: Path, tmp_path: Path) -> None:
    common = {"bucket": "any-bucket", "model_cache_dir": tmp_path}
    assert isinstance(embedder_for(Settings(model=str(exported), **common)), OnnxEmbedder)
    assert isinstance(embedder_for(Settings(model=str(tiny_model), **common)), ClipEmbedder)
    torch_setting = Settings(model=str(exported), runtime="torch", **common)
    assert isinstance(embedder_for(torch_setting), ClipEmbedder)
