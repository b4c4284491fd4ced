"""What every family's export shares: writing a tower as ONNX, and checking the export against
torch before it is published (export-time only: imports torch and onnx)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from PIL import Image

from image_search.errors import ModelLoadError
from image_search.model.vectors import Vectors, normalise

# Opset 17 is the newest the TorchScript exporter covers fully; ONNX Runtime reads it everywhere.
OPSET = 17
# The export checks itself end to end (tokenizer, preprocessing, graphs) against torch and
# refuses to publish beyond this: the runtimes must be interchangeable for one index.
TOLERANCE = 1e-4
SAMPLE_TEXTS = ["a photo of a cat", "", "A RED  car in the city at night, " * 12]


def export_onnx(
    tower: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    weights: str,
    inputs: dict[str, Any],
) -> None:
    """``tower`` traced on ``args`` into ``path``, its weights in the file ``weights`` beside it."""
    # nn.MultiheadAttention (open_clip's text towers) takes a fused kernel at inference that ONNX
    # has no operator for; the plain path computes the same attention.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        _trace(tower, args, path, inputs=inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    # The weights in a file of their own, which ONNX Runtime maps instead of copying: measured on
    # ViT-B/32, half the session start-up time and ~300 MB less resident memory.
    graph = onnx.load(str(path))
    onnx.save_model(
        graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=weights
    )


def _trace(
    tower: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, *, inputs: dict[str, Any]
) -> None:
    with warnings.catch_warnings():
        # The tracer flags Python branches on shapes (sequence-length limits, mask padding,
        # SDPA's is_causal); each holds for every input the runtime feeds (truncation keeps to
        # the limit, mask and ids always have one length, texts are never one token).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index")
        # dynamo=False is a choice (below), not an oversight to be warned about.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The TorchScript exporter: every tower here traces cleanly and matches torch to ~1e-6.
        torch.onnx.export(
            tower,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=["features"],
            dynamic_axes={**inputs, "features": {0: "batch"}},
        )


def sample_images() -> list[Image.Image]:
    """Noise pictures of three shapes (tall, a strip, square) for the export's check."""
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for height, width in ((300, 200), (64, 500), (224, 224))
    ]


def check_close(ours: list[Vectors], theirs: list[Any]) -> float:
    """The largest difference between the export's vectors and torch's (normalised here);
    ``ModelLoadError`` beyond ``TOLERANCE``, so a wrong export is never written."""
    error = max(float(np.abs(a - normalise(b)).max()) for a, b in zip(ours, theirs, strict=True))
    if not error <= TOLERANCE:
        raise ModelLoadError(
            f"the ONNX export differs from torch by {error:.1e} (> {TOLERANCE:g}); not written"
        )
    return error


def readable(directory: Path) -> None:
    for path in directory.iterdir():
        path.chmod(0o644)  # onnx writes weights 0600: other users (Lambda's) must read them
