"""Small real things for tests: a tiny random CLIP saved like a real checkpoint, and images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def save_tiny_clip(directory: Path, *, seed: int = 0, projection_dim: int = 16) -> Path:
    """A CLIP with random weights and a byte-level tokenizer, saved with ``save_pretrained``.

    It loads through the same ``from_pretrained`` path as openai/clip-vit-base-patch32; only the
    rankings are meaningless, so tests compare against brute-force oracles instead.
    """
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    symbols = sorted(ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols)]
    vocab = {token: row for row, token in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    model.save_pretrained(directory)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def random_image(seed: int, *, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> Image.Image:
    """A picture of coloured noise, different for every seed (so every vector is distinct)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    return image if mode == "RGB" else image.convert(mode)


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_bytes(seed: int, **kwargs: object) -> bytes:
    return encode(random_image(seed, **kwargs))  # type: ignore[arg-type]


def skimage_photos() -> dict[str, bytes]:
    """Real photos bundled with scikit-image (a test dependency), by file name."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"]
    return {name: (folder / name).read_bytes() for name in names}


def sample_bucket_layout() -> dict[str, bytes]:
    """Images in three folders (every format, odd names, a nested key) plus broken objects."""
    photos = skimage_photos()
    layout = {
        "animals/cat.png": photos["chelsea.png"],
        "animals/dog 1.JPG": encode(random_image(10), "JPEG"),
        "animals/deep/nested/bird.gif": encode(random_image(11), "GIF"),
        "animals/été.webp": encode(random_image(12), "WEBP"),
        "nature/astronaut.png": photos["astronaut.png"],
        "nature/leaf.bmp": encode(random_image(13), "BMP"),
        "nature/tree.tiff": encode(random_image(14), "TIFF"),
        "nature/palette.png": encode(random_image(15, mode="P"), "PNG"),
        "vehicles/rocket.jpg": photos["rocket.jpg"],
        "vehicles/coffee-cup.jpeg": photos["coffee.png"],  # PNG bytes behind a .jpeg name
        "vehicles/car.png": encode(random_image(16, mode="RGBA"), "PNG"),
        "vehicles/grey.png": encode(random_image(17, mode="L"), "PNG"),
        # Objects the build must skip and report, never fail on:
        "vehicles/truncated.jpg": encode(random_image(18), "JPEG")[:300],
        "nature/empty.png": b"",
        "animals/notes.jpg": b"this is a text file named like a photo",
        # Objects that are not images by name are ignored altogether:
        "nature/readme.txt": b"not indexed",
        "root-level.jpg": encode(random_image(19), "JPEG"),
    }
    return layout


BROKEN_KEYS = {"vehicles/truncated.jpg", "nature/empty.png", "animals/notes.jpg"}
IGNORED_KEYS = {"nature/readme.txt", "root-level.jpg"}
