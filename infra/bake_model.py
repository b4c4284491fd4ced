"""The model in the Lambda image (infra/Dockerfile): saved in the export stage, checked after.

python bake_model.py save MODEL_ID TARGET_DIR   # export stage, with network, torch installed
python bake_model.py check MODEL_DIR            # in the image: no network, no torch
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def save(model_id: str, target: Path) -> None:
    """Only what ``from_pretrained`` needs: safetensors weights in float32, config, processor.

    The export is made from this directory, so its path (``/opt/models/<model id>``) is the model
    identity the index records, as it was when the image served the model with torch: indexes
    built by either image are interchangeable.
    """
    from transformers import AutoModel, AutoProcessor

    AutoModel.from_pretrained(model_id).save_pretrained(target)
    AutoProcessor.from_pretrained(model_id).save_pretrained(target)


def check(model_dir: Path) -> None:
    """Load the directory through the functions' own path and embed a text and an image."""
    from PIL import Image

    from image_search.config import Settings
    from image_search.model.factory import embedder_for

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
    command, *args = sys.argv[1:] or [""]
    if command == "save" and len(args) == 2:
        save(args[0], Path(args[1]))
    elif command == "check" and len(args) == 1:
        check(Path(args[0]))
    else:
        raise SystemExit(__doc__)
