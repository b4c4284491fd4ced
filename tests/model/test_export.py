"""The export directory: what it holds, how it is found, what it refuses (tiny CLIP)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from image_search.errors import ConfigError, ModelLoadError
from image_search.model.export import export
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.onnx_manifest import MANIFEST, find_export
from image_search.model.preprocess import ImageSpec

TOLERANCE = 1e-4  # per component, between the runtimes (the bound)


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
