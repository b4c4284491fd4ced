"""Bake a CLIP model into the Lambda image (infra/Dockerfile), then prove it loads offline.

python bake_model.py save MODEL_ID TARGET_DIR   # at build time, with network
python bake_model.py check MODEL_DIR            # after the package is installed, offline
"""

from __future__ import annotations

import sys
from pathlib import Path


def save(model_id: str, target: Path) -> None:
    """Only what ``from_pretrained`` needs: safetensors weights in float32, config, processor.

    Saving (rather than copying the hub snapshot) leaves out the TensorFlow/Flax/pickle weights
    some hub repositories carry next to the PyTorch ones.
    """
    from transformers import AutoModel, AutoProcessor

    AutoModel.from_pretrained(model_id).save_pretrained(target)
    AutoProcessor.from_pretrained(model_id).save_pretrained(target)


def check(model_dir: Path) -> None:
    """Load the directory the way the functions do and embed a text and an image."""
    import tempfile

    from PIL import Image

    from image_search.model.embedder import ClipEmbedder

    embedder = ClipEmbedder(
        source=str(model_dir), device="cpu", cache_dir=Path(tempfile.gettempdir())
    )
    texts = embedder.embed_texts(["a photo of a cat"])
    pictures = embedder.embed_images([Image.new("RGB", (64, 64), "red")])
    if texts.shape != pictures.shape or texts.shape[1] != embedder.dim:
        raise SystemExit(f"baked model is broken: {texts.shape} vs {pictures.shape}")
    print(f"model in {model_dir} loads offline: dim {embedder.dim}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "save":
        save(args[0], Path(args[1]))
    elif command == "check":
        check(Path(args[0]))
    else:
        raise SystemExit(__doc__)
