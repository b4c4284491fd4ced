"""A tiny random SigLIP 2 (fixed resolution) saved like a real checkpoint, for the export tests.

No SigLIP tokenizer is available offline, so a small one is trained here with `tokenizers` in
SigLIP 2's own format: transformers' ``Siglip2Tokenizer`` (Gemma's byte-fallback BPE, lowercased,
spaces as ``▁``, padded on the left) built from the trained vocabulary and merges. The model is
``SiglipModel`` from a reduced config with random weights, as SigLIP 2's fixed-resolution
checkpoints load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CORPUS = [
    "a photo of a cat",
    "a red car in the city at night",
    "dogs playing on the beach",
    "mountains, lakes and a forest in autumn",
    "the quick brown fox jumps over the lazy dog",
    "un chat sur un mur",  # a little more than English, as SigLIP 2's vocabulary has
]
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # Siglip2Tokenizer's ids 0-4


def trained_tokenizer(*, vocab_size: int = 400) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Siglip2Tokenizer

    # Byte tokens first, so byte fallback covers any text the corpus never showed.
    alphabet = [f"<0x{byte:02X}>" for byte in range(256)]
    draft = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    draft.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace(" ", "▁")]
    )
    draft.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS + alphabet, show_progress=False
    )
    draft.train_from_iterator(CORPUS * 20, trainer)
    model = json.loads(draft.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return Siglip2Tokenizer(vocab=model["vocab"], merges=merges)  # type: ignore[arg-type]


# google/siglip2-base-patch16-224's architecture: a 256k Gemma vocabulary makes its text tower
# ~1.1 GB in fp32 (the tests feed it ids from the small trained vocabulary).
SIGLIP2_BASE_TEXT = {
    "vocab_size": 256_000,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
}
SIGLIP2_BASE_VISION = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 16,
}


def save_tiny_siglip(
    directory: Path,
    *,
    seed: int = 0,
    text: dict[str, int] | None = None,
    vision: dict[str, int] | None = None,
) -> Path:
    """``SiglipModel`` (2 layers, width 32 unless overridden) with a trained SigLIP 2-format
    tokenizer."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    tokenizer = trained_tokenizer()
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    vision_config = {**tiny, "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
    vision_config |= vision or {}
    config = SiglipConfig(
        text_config={
            "vocab_size": len(tokenizer),
            **tiny,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "bos_token_id": 2,
            **(text or {}),
        },
        vision_config=vision_config,
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    model.save_pretrained(directory)
    size = vision_config["image_size"]
    processor = SiglipImageProcessorPil(size={"height": size, "width": size})
    SiglipProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
