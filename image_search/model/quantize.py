"""An int8 copy of an fp32 export: ONNX Runtime's dynamic quantisation of both towers, with every
convolution's weights stored as int8 but run in fp32.

Dynamic: weights are stored as int8 and activations are quantised per call from their own range,
so no calibration data is needed and any export quantises the same way. Convolutions are the
exception: ONNX Runtime's dynamic ConvInteger is slow on CPU (ViT-B/32's patch embedding alone
held its image tower at 31 ms a picture against 22 ms without it), so a Conv keeps an fp32 kernel
and only its weight is int8, dequantised per output channel (DequantizeLinear -> Conv); the file
stays a quarter of fp32's size. Its cost in quality is the user's to measure: see ``quality.py``
and ``--check``.

Needs onnx and onnxruntime's quantisation tools, never torch: the fp32 export it starts from is
written by ``export.py``, which hands ``write_int8`` the function that writes it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from image_search.errors import QualityGateError
from image_search.model import quality
from image_search.model.onnx_manifest import ExportManifest, QualityCheck, read_manifest
from image_search.storage import s3

if TYPE_CHECKING:
    import onnx

LOG = logging.getLogger(__name__)

# The int8 recipe's name, recorded in the manifest (``exported_with``). Copies of an export cached
# by name (the benchmark's) carry it, so a new recipe re-quantises instead of reusing an old copy:
# change it whenever quantise_export's output changes.
RECIPE = "dynamic-conv-weight-only"
# DequantizeLinear takes a scale per channel (``axis``) from opset 13; every export here is newer.
PER_AXIS_OPSET = 13


@dataclass(frozen=True, slots=True)
class Gate:
    """``--check``: compare a quantised export with fp32 on images under ``url`` before writing."""

    url: str  # s3://bucket/prefix/
    sample: int = quality.DEFAULT_SAMPLE
    min_overlap: float = quality.DEFAULT_MIN_OVERLAP
    force: bool = False  # write it even below ``min_overlap`` (the manifest says it failed)


def write_int8(
    write_fp32: Callable[[Path], ExportManifest],
    directory: Path,
    *,
    gate: Gate | None,
    client: s3.S3Client | None,
) -> ExportManifest:
    """The fp32 export (``write_fp32``: checked against torch) in a scratch directory, its int8
    copy in ``directory``, and with a gate the two compared on the user's images."""
    from image_search.model.onnx_clip import OnnxEmbedder

    with tempfile.TemporaryDirectory(prefix="image-search-fp32-") as scratch:
        fp32 = Path(scratch)
        write_fp32(fp32)
        manifest = quantise_export(fp32, directory)
        if gate is None:
            LOG.warning(
                "int8 export written without --check: its quality on your images is unknown"
            )
            return manifest
        sample = quality.sample_bucket(
            gate.url, size=gate.sample, client=client or s3.make_client()
        )
        overlap = quality.compare(
            OnnxEmbedder(source=str(fp32), cache_dir=fp32),
            OnnxEmbedder(source=str(directory), cache_dir=directory),
            sample,
        )
    passed = overlap.passes(gate.min_overlap)
    manifest.check = QualityCheck(
        source=gate.url,
        sample=len(sample.keys),
        prompts=len(sample.prompts),
        image=round(overlap.image, 4),
        text=None if overlap.text is None else round(overlap.text, 4),
        threshold=gate.min_overlap,
        passed=passed,
    )
    LOG.info("%s on %d images, %d prompts", overlap.line(), len(sample.keys), len(sample.prompts))
    if not passed and not gate.force:
        raise QualityGateError(
            f"{overlap.line()}: below {gate.min_overlap:g} on {len(sample.keys)} images of "
            f"{gate.url}; int8 ranks them too differently from fp32. Serve the fp32 export, or "
            "write this one anyway with --force"
        )
    manifest.write(directory)
    return manifest


def quantise_export(fp32: Path, target: Path) -> ExportManifest:
    """Write the int8 export of the fp32 export in ``fp32`` into the empty directory ``target``."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    manifest = read_manifest(fp32)
    files = manifest.files
    for name in (files.tokenizer, files.preprocessor):
        shutil.copyfile(fp32 / name, target / name)
    for graph, weights in ((files.text, files.text_weights), (files.vision, files.vision_weights)):
        staged = target / f"{graph}.quantising"
        with warnings.catch_warnings(), _without_preprocessing_advice():
            warnings.simplefilter("ignore")
            # QInt8 weights (signed), uint8 activations: the pair ONNX Runtime's CPU kernels
            # (MatMulInteger, VNNI where present) are built for.
            quantize_dynamic(
                fp32 / graph,
                staged,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=_dynamic_op_types(),
            )
        model = onnx.load(str(staged))
        int8_conv_weights(model)
        # The weights beside the graph, as in every export: ONNX Runtime maps them.
        onnx.save_model(
            model,
            str(target / graph),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=weights,
        )
        staged.unlink()
    tools = {**manifest.exported_with, "onnxruntime": onnxruntime.__version__, "int8": RECIPE}
    quantised = manifest.model_copy(
        update={"precision": "int8", "max_abs_error": None, "exported_with": tools}
    )
    quantised.write(target)
    LOG.info("quantised %s to int8 in %s", manifest.source, target)
    return quantised


def _dynamic_op_types() -> list[str]:
    """Every op type ONNX Runtime's dynamic quantiser handles but Conv, which it turns into
    ConvInteger: slow on CPU (ViT-B/32's image tower, batch 1, 2 threads: 31 ms a picture with it,
    22 ms with the Conv in fp32, the same 0.9998 mean cosine to fp32). Conv weights are made
    int8 by ``int8_conv_weights`` instead."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    return sorted(set(IntegerOpsRegistry) - {"Conv"})


def int8_conv_weights(model: onnx.ModelProto) -> int:
    """Store the constant weight of every Conv in ``model``'s graph as int8 (symmetric, a scale
    per output channel, zero point 0) behind a DequantizeLinear, so the Conv runs in fp32 on
    weights that take a quarter of the space. Leaving the Convs fp32 instead would keep the
    speed but add 7 MB to ViT-B/32's image tower and more to convolutional towers (MobileCLIP 2).
    Returns how many weights were rewritten."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < PER_AXIS_OPSET:
        LOG.warning("opset %d has no per-channel DequantizeLinear: Conv weights stay fp32", opset)
        return 0
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    inputs = {value.name for value in graph.input}  # an initializer the caller may override
    names = {n.input[1] for n in graph.node if n.op_type == "Conv" and n.domain in ("", "ai.onnx")}
    dequantise = []
    for name in sorted(names - inputs):
        weight = initializers.get(name)
        if weight is None or weight.data_type != TensorProto.FLOAT:
            continue  # computed or not fp32: left as it is
        values, scale = _symmetric_int8(numpy_helper.to_array(weight))
        graph.initializer.remove(weight)
        graph.initializer.extend(
            [
                numpy_helper.from_array(values, f"{name}_int8"),
                numpy_helper.from_array(scale, f"{name}_int8_scale"),
                numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_int8_zero"),
            ]
        )
        # Its output keeps the weight's name: every reader of the weight now reads it dequantised.
        dequantise.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_int8", f"{name}_int8_scale", f"{name}_int8_zero"],
                [name],
                name=f"{name}_dequantise",
                axis=0,
            )
        )
    # First in the graph, which lists its nodes in the order they run.
    nodes = [*dequantise, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(dequantise)


def _symmetric_int8(
    weight: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """``weight`` (output channels first, as Conv has them) as int8 in [-127, 127] and the scale
    of each output channel: its largest magnitude maps to 127."""
    rows = weight.reshape(weight.shape[0], -1)
    peak = np.abs(rows).max(axis=1)
    # An all-zero channel quantises to zeros under any scale; 1 keeps the scale nonzero.
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    values = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return values.reshape(weight.shape), scale


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """quantize_dynamic reports on the root logger: a line per tensor at INFO, and advice for its
    optional shape-inference pre-pass (a separate tool, not used here) at WARNING. Neither helps
    the person exporting; real warnings pass."""

    def keep(record: logging.LogRecord) -> bool:
        advice = "pre-processing before quantization" in record.getMessage()
        return record.levelno >= logging.WARNING and not advice

    logging.root.addFilter(keep)
    try:
        yield
    finally:
        logging.root.removeFilter(keep)
