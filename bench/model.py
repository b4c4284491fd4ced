"""The benchmark model: openai/clip-vit-base-patch32's architecture with random weights.

Speed depends on the architecture, not on the weights, so a randomly initialised ViT-B/32 saved
with ``save_pretrained`` and loaded through the product's ``ClipEmbedder`` costs what the real
model costs. The real tokenizer and preprocessor files come from ``../shared/clip-tokenizer``
when present; otherwise a byte-level tokenizer and the default CLIP preprocessor are generated.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "clip-tokenizer"
TOKENIZER_FILES = (
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
)
CACHE = Path(tempfile.gettempdir()) / "image-search-bench-models"


def benchmark_model(*, shared: Path = SHARED, tiny: bool = False) -> Path:
    """A saved model directory (made once per machine, reused by later runs).

    ``tiny`` gives a 2-layer model for smoke tests of the benchmark code itself.
    """
    source = "shared" if (shared / "config.json").is_file() else "generated"
    key = hashlib.sha256(f"{source}:{tiny}:{_fingerprint(shared)}".encode()).hexdigest()[:12]
    target = CACHE / f"clip-{'tiny' if tiny else 'vit-b32'}-{source}-{key}"
    if (target / "model.safetensors").is_file():
        return target
    staging = Path(tempfile.mkdtemp(dir=_parent(target), prefix=".partial-"))
    try:
        _save(staging, shared=shared if source == "shared" else None, tiny=tiny)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOG.info("benchmark model saved to %s (%s tokenizer)", target, source)
    return target


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def _fingerprint(shared: Path) -> str:
    config = shared / "config.json"
    return hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else "-"


def _save(directory: Path, *, shared: Path | None, tiny: bool) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel

    config: Any = CLIPConfig.from_pretrained(shared) if shared else CLIPConfig()  # = ViT-B/32
    if tiny:
        config.text_config.num_hidden_layers = 2
        config.vision_config.num_hidden_layers = 2
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(directory)
    if shared:
        for name in TOKENIZER_FILES:
            if (shared / name).is_file():
                shutil.copy(shared / name, directory / name)
    else:
        _generated_processor(config).save_pretrained(directory)


def _generated_processor(config: object):  # type: ignore[no-untyped-def]
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPImageProcessorPil, CLIPProcessor, CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols)]
    tokenizer = CLIPTokenizer(vocab={t: row for row, t in enumerate(tokens)}, merges=[])
    return CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tokenizer)
