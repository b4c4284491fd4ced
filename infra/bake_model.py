"""Prove the model in the Lambda image (infra/Dockerfile) loads and embeds, as the functions do.

python check_model.py MODEL_DIR    # after the package is installed; no network, no torch
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def check(model_dir: Path) -> None:
    """Load the directory through the functions' own path and embed a text and an image."""
    from PIL import Image

    from image_search.config import Settings
    from image_search.model.cache import embedder_for

    settings = Settings(
        bucket="image-check",  # required by Settings; never contacted
        model=str(model_dir),
        model_cache_dir=Path(tempfile.gettempdir()),
    )
    embedder = embedder_for(settings).load()
    texts = embedder.embed_texts(["a photo of a cat"])
    pictures = embedder.embed_images([Image.new("RGB", (64, 64), "red")])
    if texts.shape != pictures.shape or texts.shape[1] != embedder.dim:
        raise SystemExit(f"the model is broken: {texts.shape} vs {pictures.shape}")
    print(
        f"model in {model_dir} loads ({type(embedder).__name__}): "
        f"identity {embedder.identity}, dim {embedder.dim}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    check(Path(sys.argv[1]))
