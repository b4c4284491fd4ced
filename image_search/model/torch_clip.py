"""CLIP text and image embeddings on torch: the one runtime module that imports torch and
transformers (``export.py`` is the other importer, and runs apart from serving)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor
from transformers.utils import logging as hf_logging

from image_search.errors import ModelLoadError
from image_search.model import source as model_source
from image_search.model.torchvision_ops import ensure_importable
from image_search.model.vectors import Vectors, normalise

LOG = logging.getLogger(__name__)
hf_logging.disable_progress_bar()


def pick_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


class ClipEmbedder:
    """A CLIP-family model loaded once; every output is float32, L2-normalised, shape (n, dim)."""

    runtime = "torch"
    precision = "fp32"  # quantised models serve from an export (onnx_clip)

    def __init__(
        self, *, source: str, device: str = "auto", batch_size: int = 32, cache_dir: Path
    ) -> None:
        self.source = source
        self.device = pick_device(device)
        self.batch_size = batch_size
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None

    def load(self) -> ClipEmbedder:
        """Load the weights (idempotent, thread-safe); ``ModelLoadError`` says how to fix it."""
        with self._lock:
            if self._model is None:
                self._model, self._processor = self._load()
        return self

    def load_text(self) -> ClipEmbedder:
        """One model holds both towers here: loading the text tower loads it all."""
        return self.load()

    @property
    def image_ready(self) -> bool:
        return self._model is not None

    def _load(self) -> tuple[Any, Any]:
        path = model_source.resolve(self.source, cache_dir=self._cache_dir)
        # The PIL image processors, which the ONNX runtime reproduces, even where torchvision is
        # installed (transformers would pick its torchvision ones).
        ensure_importable()
        try:
            model = AutoModel.from_pretrained(path).to(self.device).eval()
            processor = AutoProcessor.from_pretrained(path, backend="pil")
        except (OSError, ValueError) as exc:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            hint = "" if Path(path).is_dir() or offline else " (no access to the model hub?)"
            raise ModelLoadError(
                f"cannot load model {self.source!r}{hint}: {str(exc).splitlines()[0]}. "
                "Pass a local model directory with IMAGE_SEARCH_MODEL=/path/to/model or --model."
            ) from exc
        if not hasattr(model, "get_text_features") or not hasattr(model, "get_image_features"):
            raise ModelLoadError(f"model {self.source!r} is not a CLIP-family model")
        if model.config.model_type != "clip":
            # SigLIP pads its texts its own way: the export reproduces that, this runtime does not.
            raise ModelLoadError(
                f"model {self.source!r} is a {model.config.model_type} model, which serves from "
                "its ONNX export: `python -m image_search export --model M --output DIR`, then "
                "IMAGE_SEARCH_MODEL=DIR"
            )
        LOG.info("loaded model %s on %s (dim %d)", self.source, self.device, _dim(model))
        return model, processor

    @property
    def identity(self) -> str:
        """The model's name as configured; an ONNX export of it reports the same name."""
        return self.source

    @property
    def dim(self) -> int:
        return _dim(self.load()._model)

    @property
    def max_text_tokens(self) -> int:
        return int(self.load()._model.config.text_config.max_position_embeddings)

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        self.load()
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            inputs = self._processor.tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_text_tokens,
                return_tensors="pt",
            )
            parts.append(self._features(self._model.get_text_features, inputs))
        return _stack(parts, self.dim)

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        self.load()
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = list(images[start : start + self.batch_size])
            inputs = self._processor.image_processor(images=batch, return_tensors="pt")
            parts.append(self._features(self._model.get_image_features, inputs))
        return _stack(parts, self.dim)

    def _features(self, method: Any, inputs: Any) -> Vectors:
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        # One forward pass at a time: torch already spreads each over every core, and
        # concurrent passes from the server's threads only oversubscribe them.
        with self._infer_lock, torch.inference_mode():
            output = method(**inputs)
        # transformers 5 returns an output object whose pooler_output holds the projected
        # features; older releases returned the tensor itself.
        features = getattr(output, "pooler_output", output)
        return normalise(features.float().cpu().numpy())


def _dim(model: Any) -> int:
    return int(model.config.projection_dim)


def _stack(parts: list[Vectors], dim: int) -> Vectors:
    if not parts:
        return np.zeros((0, dim), dtype=np.float32)
    return normalise(np.concatenate(parts))
