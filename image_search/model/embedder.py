"""The one interface every runtime answers: texts and images in, unit vectors out.

``torch_clip.ClipEmbedder`` and ``onnx_clip.OnnxEmbedder`` implement it; ``factory.embedder_for``
picks one. The build, the service and the demo only ever see this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PIL import Image

from image_search.model.vectors import Vectors


class Embedder(Protocol):
    """Float32, L2-normalised vectors of shape (n, dim), whichever runtime computes them."""

    source: str  # the configured IMAGE_SEARCH_MODEL
    batch_size: int
    runtime: str  # "torch" or "onnx", for /health and the logs

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``: part of the identity when not fp32."""
        ...

    @property
    def identity(self) -> str:
        """The model the vectors come from, whatever the runtime: builds record it."""
        ...

    @property
    def dim(self) -> int: ...

    def load(self) -> Embedder:
        """Both towers, once (idempotent, thread-safe)."""
        ...

    def load_text(self) -> Embedder:
        """The text tower at least: what a cold start needs before it answers text searches."""
        ...

    @property
    def image_ready(self) -> bool:
        """Whether the image tower is loaded (``embed_images`` would load it otherwise)."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> Vectors: ...

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors: ...
