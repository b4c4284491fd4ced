"""An int8 copy of an fp32 export: ONNX Runtime's dynamic quantisation of both towers.

Dynamic: weights are stored as int8 and activations are quantised per call from their own range,
so no calibration data is needed and any export quantises the same way. On CPUs with VNNI it ran
ViT-B/32's image tower 3x and its text tower 2.5x faster than fp32 ONNX, at a quarter of the size
(the issue's measurements; docs/models.md). Its cost in quality is the user's to measure: see
``quality.py`` and ``--check``.

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

from image_search.errors import QualityGateError
from image_search.model import quality
from image_search.model.onnx_manifest import ExportManifest, QualityCheck, read_manifest
from image_search.storage import s3

LOG = logging.getLogger(__name__)


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
