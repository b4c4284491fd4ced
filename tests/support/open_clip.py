"""open_clip models for the tests that need open_clip (the export environment, .venv-export).

``pytest.importorskip`` skips a module using this where open_clip is not installed (the default
venv): those tests run under ``make test-open-clip``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from image_search.model.torchvision_ops import ensure_importable

ensure_importable()
open_clip: Any = pytest.importorskip(
    "open_clip", reason="open_clip is in the export environment: make test-open-clip"
)

ARCH = "MobileCLIP2-S0"
# MobileCLIP 2's family at a size the default run affords: the real image tower (FastViT MCi0,
# the smallest of the family) and the real tokenizer and text layout (77 positions, no causal
# mask, argmax pooling), with 2 narrow text layers instead of 12 wide ones.
REDUCED = "MobileCLIP2-S0-reduced"


def register_reduced(directory: Path) -> str:
    """Register the reduced config with open_clip (once per process) and return its name."""
    if REDUCED not in open_clip.list_models():
        config = json.loads((_configs() / f"{ARCH}.json").read_text())
        config["text_cfg"] |= {"width": 128, "heads": 2, "layers": 2}
        path = directory / f"{REDUCED}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
    return REDUCED


def save_random_weights(arch: str, path: Path, *, seed: int = 0) -> Path:
    """Random weights of ``arch`` saved as a checkpoint file, as ``--weights FILE`` takes one."""
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    torch.save(model.state_dict(), path)
    return path


def _configs() -> Path:
    return Path(open_clip.__file__).parent / "model_configs"
