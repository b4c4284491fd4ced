"""One model per process and configuration: Lambda and the server reuse it across requests.

Also where the runtime is chosen: ONNX Runtime for an export (``python -m image_search
export``), torch for a model as transformers saves it. Both give interchangeable vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from PIL import Image

from image_search.config import Settings
from image_search.errors import ConfigError, ModelLoadError
from image_search.model import source as model_source
from image_search.model.onnx_manifest import find_export
from image_search.model.vectors import Vectors

LOG = logging.getLogger(__name__)


class Embedder(Protocol):
    """What ``ClipEmbedder`` (torch) and ``OnnxEmbedder`` both offer."""

    source: str  # the configured IMAGE_SEARCH_MODEL
    batch_size: int

    @property
    def identity(self) -> str:
        """The model the vectors come from, whatever the runtime: builds record it."""
        ...

    @property
    def dim(self) -> int: ...

    def load(self) -> Embedder: ...

    def embed_texts(self, texts: Sequence[str]) -> Vectors: ...

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors: ...


def embedder_for(settings: Settings) -> Embedder:
    """The process's embedder for ``settings``' model (loaded lazily, on first use)."""
    return _embedder(
        settings.model,
        settings.runtime,
        settings.device,
        settings.batch_size,
        str(settings.model_cache_dir),
        settings.onnx_threads,
    )


def choose_runtime(source: str, *, runtime: str, device: str, cache_dir: Path) -> str:
    """``onnx`` or ``torch`` for ``source`` under the ``runtime`` setting."""
    gpu = device not in ("auto", "cpu")
    if runtime == "onnx" and gpu:
        raise ConfigError(
            f"IMAGE_SEARCH_RUNTIME=onnx runs on the CPU; IMAGE_SEARCH_DEVICE={device} "
            "needs IMAGE_SEARCH_RUNTIME=torch (or auto)"
        )
    if runtime != "auto":
        return runtime
    if gpu:
        return "torch"  # GPU builds keep the torch path: ONNX here is for CPUs
    # For an s3:// model this downloads it, as loading it would anyway; hub ids stay names.
    path = Path(model_source.resolve(source, cache_dir=cache_dir))
    if path.is_dir() and find_export(path) is not None:
        return "onnx"
    LOG.info(
        "model %s runs on torch; for faster CPU inference and cold starts export it with "
        "`python -m image_search export --model %s --output DIR` and set IMAGE_SEARCH_MODEL=DIR",
        source,
        source,
    )
    return "torch"


@lru_cache(maxsize=4)
def _embedder(
    source: str, runtime: str, device: str, batch_size: int, cache_dir: str, threads: int
) -> Embedder:
    # Imported here: torch and transformers cost seconds (and are absent from the Lambda
    # image), and code that only reads an index (or lists folders) needs no model at all.
    chosen = choose_runtime(source, runtime=runtime, device=device, cache_dir=Path(cache_dir))
    if chosen == "onnx":
        from image_search.model.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(
            source=source, batch_size=batch_size, cache_dir=Path(cache_dir), threads=threads
        )
    try:
        from image_search.model.embedder import ClipEmbedder
    except ImportError as exc:  # the Lambda image: ONNX Runtime only
        raise ModelLoadError(
            f"model {source!r} is not an ONNX export and torch is not installed ({exc}): "
            "point IMAGE_SEARCH_MODEL at an export (`python -m image_search export`)"
        ) from exc
    return ClipEmbedder(
        source=source, device=device, batch_size=batch_size, cache_dir=Path(cache_dir)
    )
