"""A small deterministic embedder for stage tests: vectors from pixels, every call counted.

It answers the ``Embedder`` protocol (image_search/model/embedder.py) without torch, so a test
can tell exactly which vector each image must get (``pixel_vector``) and whether a stage embedded
anything at all. Tests that need real CLIP vectors use the ``embedder`` fixture instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from image_search.model.vectors import Vectors, normalise

SIDE = 2  # the image is shrunk to SIDE x SIDE RGB pixels, one dimension each, and one more
DIM = SIDE * SIDE * 3 + 1


def pixel_vector(image: Image.Image) -> Vectors:
    """The unit vector of one image: its pixels shrunk to 2 x 2, centred on mid-grey (so two
    noise pictures point different ways), and a small constant (so a grey one is no zero)."""
    small = np.asarray(image.convert("RGB").resize((SIDE, SIDE)), dtype=np.float32)
    centred = (small.reshape(1, DIM - 1) - 127.5) / 127.5
    return normalise(np.hstack([centred, np.full((1, 1), 0.05, dtype=np.float32)]))


class CountingEmbedder:
    """``pixel_vector`` for every image, counting the calls and the images embedded."""

    source = "counting-embedder"
    runtime = "numpy"
    precision = "fp32"
    dim = DIM

    def __init__(self, *, batch_size: int = 4, identity: str = "counting-embedder") -> None:
        self.batch_size = batch_size
        self.identity = identity
        self.calls = 0
        self.images = 0

    def load(self) -> CountingEmbedder:
        return self

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """A vector from each text's bytes (the build never asks; the protocol has it)."""
        rows = [np.frombuffer(text.encode().ljust(DIM, b" ")[:DIM], np.uint8) for text in texts]
        return normalise(np.vstack(rows).astype(np.float32) + 1.0)

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        self.calls += 1
        self.images += len(images)
        return np.vstack([pixel_vector(image) for image in images])
