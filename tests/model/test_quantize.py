"""The int8 export of the tiny CLIP: its manifest, its graphs, its vectors beside fp32's; and the
Conv rewrite (int8 weights, fp32 convolution) on a graph of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from image_search.model.export import export
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.onnx_manifest import MANIFEST
from image_search.model.quantize import RECIPE, int8_conv_weights
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
    assert manifest["exported_with"]["int8"] == RECIPE  # what names cached copies (bench)
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


def test_every_conv_runs_in_fp32_on_int8_weights(int8: Path, exported: Path) -> None:
    # ONNX Runtime's ConvInteger (dynamic quantisation's Conv) is slower on CPU than fp32 Conv.
    before = onnx.load(str(exported / "vision.onnx"))
    after = onnx.load(str(int8 / "vision.onnx"))
    assert not [n for n in after.graph.node if n.op_type == "ConvInteger"]
    convs = [n for n in after.graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(n.op_type == "Conv" for n in before.graph.node) > 0
    initializers = {i.name: i for i in after.graph.initializer}
    made_by = {out: n for n in after.graph.node for out in n.output}
    for conv in convs:
        dequantise = made_by[conv.input[1]]
        assert dequantise.op_type == "DequantizeLinear"
        assert helper.get_attribute_value(dequantise.attribute[0]) == 0  # axis: output channels
        weight, scale, zero = (initializers[name] for name in dequantise.input)
        assert weight.data_type == TensorProto.INT8 and zero.data_type == TensorProto.INT8
        assert list(scale.dims) == list(zero.dims) == [weight.dims[0]]
        assert not numpy_helper.to_array(zero).any()


def test_a_conv_weight_rewrite_keeps_its_output() -> None:
    """Grouped, per-channel scales far apart, an all-zero channel, a weight shared by two Convs:
    the rewritten graph's output stays within int8's rounding of the fp32 graph's."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 1, 3, 3)).astype(np.float32) * np.array(
        [1e-3, 1.0, 30.0, 0.0], np.float32
    ).reshape(4, 1, 1, 1)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["y"], group=4, pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["y", "w"], ["z"], group=4),
        ],
        "convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 6, 6])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.normal(size=(1, 4, 8, 8)).astype(np.float32)
    expected = _run(model, x)
    assert int8_conv_weights(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT] == [
        "w_int8_scale"
    ]
    got = _run(model, x)
    for channel in range(4):
        peak = np.abs(expected[0, channel]).max()
        np.testing.assert_allclose(got[0, channel], expected[0, channel], atol=0.05 * peak)
    assert not got[0, 3].any()


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"x": x})[0]  # type: ignore[no-any-return]


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
