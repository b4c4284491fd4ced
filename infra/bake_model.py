"""The model in the Lambda image (infra/Dockerfile): saved in the export stage, checked after.

python bake_model.py save MODEL_ID TARGET_DIR [--local DIR --exported DIR]   # export stage
python bake_model.py check MODEL_DIR            # in the image: no network, no torch

``--local`` is infra/model/ as copied into the build: empty (but for its README) means the hub's
MODEL_ID; a checkpoint there is saved instead of the hub's; an ONNX export there is copied to
``--exported`` as it is (the build then skips the export).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

EXPORT_MARKER = "export.json"  # written by `python -m image_search export`
CHECKPOINT_MARKER = "config.json"  # written by `save_pretrained`


def save(
    model_id: str, target: Path, *, local: Path | None = None, exported: Path | None = None
) -> None:
    """Only what ``from_pretrained`` needs: safetensors weights in float32, config, processor.

    The export is made from this directory, so its path (``/opt/models/<model id>``) is the model
    identity the index records, as it was when the image served the model with torch: indexes
    built by either image are interchangeable. A local checkpoint keeps that identity; a local
    export keeps its own (the source its ``export.json`` names).
    """
    if local is not None and (local / EXPORT_MARKER).is_file():
        if exported is None:
            raise SystemExit(f"{local} holds an ONNX export: pass --exported DIR to copy it to")
        shutil.copytree(local, exported, ignore=shutil.ignore_patterns("README.md"))
        print(f"using the ONNX export in {local} as it is")
        return
    from transformers import AutoModel, AutoProcessor

    source = model_id
    if local is not None and (local / CHECKPOINT_MARKER).is_file():
        source = str(local)
        print(f"using the checkpoint in {local} instead of the hub's {model_id}")
    AutoModel.from_pretrained(source).save_pretrained(target)
    AutoProcessor.from_pretrained(source).save_pretrained(target)


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
    options = dict(zip(args[2::2], args[3::2], strict=False))
    if command == "save" and len(args) in (2, 4, 6) and set(options) <= {"--local", "--exported"}:
        local, exported = options.get("--local"), options.get("--exported")
        save(
            args[0],
            Path(args[1]),
            local=Path(local) if local else None,
            exported=Path(exported) if exported else None,
        )
    elif command == "check" and len(args) == 1:
        check(Path(args[0]))
    else:
        raise SystemExit(__doc__)
