"""An int8 copy of an fp32 export: ONNX Runtime's dynamic quantisation of both towers.

Dynamic: weights are stored as int8 and activations are quantised per call from their own range,
so no calibration data is needed and any export quantises the same way. On CPUs with VNNI it ran
ViT-B/32's image tower 3x and its text tower 2.5x faster than fp32 ONNX, at a quarter of the size
(the issue's measurements; docs/models.md). Its cost in quality is the user's to measure: see
``quality.py`` and ``--check``.

Needs onnx and onnxruntime's quantisation tools, never torch: it runs on an export already made.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from image_search.model.onnx_manifest import ExportManifest, read_manifest

LOG = logging.getLogger(__name__)


def quantise_export(fp32: Path, target: Path) -> ExportManifest:
    """Write the int8 export of the fp32 export in ``fp32`` into the empty directory ``target``."""
    import onnx
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
            quantize_dynamic(fp32 / graph, staged, weight_type=QuantType.QInt8)
        # The weights beside the graph, as in every export: ONNX Runtime maps them.
        model = onnx.load(str(staged))
        onnx.save_model(
            model,
            str(target / graph),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=weights,
        )
        staged.unlink()
    quantised = manifest.model_copy(update={"precision": "int8", "max_abs_error": None})
    quantised.write(target)
    LOG.info("quantised %s to int8 in %s", manifest.source, target)
    return quantised


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
