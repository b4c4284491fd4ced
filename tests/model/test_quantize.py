"""The int8 export of the tiny CLIP: its manifest, its graphs, its vectors beside fp32's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from image_search.model.export import export
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.onnx_manifest import MANIFEST
from tests.support.factories import random_image

# Keys of an fp32 export.json before precisions existed: fp32 exports still write exactly these.
FP32_KEYS = {
    "format", "source", "dim", "opset", "max_text_tokens", "pad_token", "pad_id",
    "image_size", "files", "max_abs_error", "exported_with",
}  # fmt: skip


@pytest.fixture(scope="module")
def int8(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("int8") / "tiny-int8"
    export(str(tiny_model), str(target), cache_dir=target.parent / "cache", precision="int8")
    return target


def test_the_manifest_records_int8_in_a_format_older_readers_refuse(
    int8: Path, exported: Path, tiny_model: Path
) -> None:
    manifest = json.loads((int8 / MANIFEST).read_text())
    assert manifest["precision"] == "int8" and manifest["format"] == 2
    assert manifest["source"] == str(tiny_model) and manifest["check"] is None
    assert sorted(p.name for p in int8.iterdir()) == sorted(p.name for p in exported.iterdir())
    fp32 = json.loads((exported / MANIFEST).read_text())
    assert set(fp32) == FP32_KEYS and fp32["format"] == 1


def test_every_matmul_by_a_weight_runs_on_int8(int8: Path, exported: Path) -> None:
    for tower in ("text.onnx", "vision.onnx"):
        before = onnx.load(str(exported / tower))
        after = onnx.load(str(int8 / tower))
        # Attention's two products multiply activations: dynamic quantisation leaves those.
        weights = {i.name for i in before.graph.initializer}
        matmuls = sum(n.op_type == "MatMul" and n.input[1] in weights for n in before.graph.node)
        assert matmuls > 0
        assert sum(node.op_type == "MatMulInteger" for node in after.graph.node) == matmuls
        kinds = {i.data_type for i in after.graph.initializer if len(i.dims) == 2}
        assert onnx.TensorProto.INT8 in kinds


def test_int8_vectors_are_unit_float32_and_close_to_fp32(
    int8: Path, onnx: OnnxEmbedder, tiny_model: Path, tmp_path: Path
) -> None:
    quantised = OnnxEmbedder(source=str(int8), cache_dir=tmp_path)
    assert quantised.identity == f"{tiny_model}#int8" and quantised.precision == "int8"
    assert onnx.identity == str(tiny_model) and onnx.precision == "fp32"
    pictures = [random_image(seed) for seed in range(8)]
    for ours, theirs in (
        (quantised.embed_images(pictures), onnx.embed_images(pictures)),
        (quantised.embed_texts(["a cat", "a red car"]), onnx.embed_texts(["a cat", "a red car"])),
    ):
        assert ours.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cosine = (ours * theirs).sum(axis=1)
        assert cosine.min() > 0.99 and not np.array_equal(ours, theirs)
