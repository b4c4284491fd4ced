"""One model per process and configuration, its runtime chosen once: Lambda and the server reuse
it across requests.

ONNX Runtime for an export (``python -m image_search export``), torch for a model as transformers
saves it. Both give interchangeable vectors; nothing downstream asks which one runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from image_search.config import Runtime, Settings
from image_search.errors import ConfigError, ModelLoadError
from image_search.model import source as model_source
from image_search.model.embedder import Embedder
from image_search.model.onnx_manifest import find_export

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The settings a model is made from (hashable: one embedder per distinct choice)."""

    source: str
    runtime: Runtime
    device: str
    batch_size: int
    cache_dir: Path
    threads: int


def embedder_for(settings: Settings) -> Embedder:
    """The process's embedder for ``settings``' model (loaded lazily, on first use)."""
    return get_embedder(
        ModelChoice(
            source=settings.model,
            runtime=settings.runtime,
            device=settings.device,
            batch_size=settings.batch_size,
            cache_dir=settings.model_cache_dir,
            threads=settings.onnx_threads,
        )
    )


def choose_runtime(source: str, *, runtime: str, device: str, cache_dir: Path) -> str:
    """``onnx`` or ``torch`` for ``source`` under the ``runtime`` setting."""
    gpu = device not in ("auto", "cpu")
    if runtime == "onnx" and gpu:
        raise ConfigError(
            f"IMAGE_SEARCH_RUNTIME=onnx runs on the CPU; IMAGE_SEARCH_DEVICE={device} "
            "needs IMAGE_SEARCH_RUNTIME=torch (or auto)"
        )
    if model_source.looks_like_a_path(source):
        # A mistyped directory fails here, when the embedder is made: before a build plans.
        model_source.resolve(source, cache_dir=cache_dir)
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
def get_embedder(choice: ModelChoice) -> Embedder:
    """The embedder for ``choice``, one per process; the runtime is decided here and only here."""
    # Each runtime's module is imported in its branch: torch and transformers cost seconds (and
    # are absent from the Lambda image), and code that only reads an index needs no model.
    runtime = choose_runtime(
        choice.source, runtime=choice.runtime, device=choice.device, cache_dir=choice.cache_dir
    )
    match runtime:
        case "onnx":
            from image_search.model.onnx_clip import OnnxEmbedder

            return OnnxEmbedder(
                source=choice.source,
                batch_size=choice.batch_size,
                cache_dir=choice.cache_dir,
                threads=choice.threads,
            )
        case "torch":
            try:
                from image_search.model.torch_clip import ClipEmbedder
            except ImportError as exc:  # the Lambda image: ONNX Runtime only
                raise ModelLoadError(
                    f"model {choice.source!r} is not an ONNX export and torch is not installed "
                    f"({exc}): point IMAGE_SEARCH_MODEL at an export (`python -m image_search "
                    "export`)"
                ) from exc
            return ClipEmbedder(
                source=choice.source,
                device=choice.device,
                batch_size=choice.batch_size,
                cache_dir=choice.cache_dir,
            )
        case _:
            raise ConfigError(f"unknown runtime {runtime!r}: use auto, onnx or torch")
