"""One model per process and configuration: Lambda and the server reuse it across requests."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from image_search.config import Settings

if TYPE_CHECKING:
    from image_search.model.embedder import ClipEmbedder


def embedder_for(settings: Settings) -> ClipEmbedder:
    """The process's embedder for ``settings``' model (loaded lazily, on first use)."""
    return _embedder(
        settings.model, settings.device, settings.batch_size, str(settings.model_cache_dir)
    )


@lru_cache(maxsize=4)
def _embedder(source: str, device: str, batch_size: int, cache_dir: str) -> ClipEmbedder:
    # Imported here: torch and transformers cost seconds, and code that only reads an index
    # (or lists folders) never needs them.
    from pathlib import Path

    from image_search.model.embedder import ClipEmbedder

    return ClipEmbedder(
        source=source, device=device, batch_size=batch_size, cache_dir=Path(cache_dir)
    )
