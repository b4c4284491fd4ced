"""Small real things for tests: a tiny random CLIP saved like a real checkpoint, and images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from image_search.artefacts.manifest import Item, Metadata, folder_ranges


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


def phone_bytes(image: Image.Image, fmt: str) -> bytes:
    """``image`` as a phone saves it: HEIF (HEVC, through pillow-heif's encoder) or AVIF."""
    import pillow_heif

    pillow_heif.register_heif_opener()  # the encoder too; idempotent
    return encode(image, fmt, quality=90)


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


# ---- malformed metadata, written byte by byte (Pillow refuses to write wrong tag types) ------

SHORT, LONG, ASCII = 3, 4, 2  # TIFF field types


def tiff_ifd(entries: list[tuple[int, int, int, bytes]], *, tail: bytes = b"") -> bytes:
    """A little-endian TIFF header and one IFD of (tag, type, count, value bytes), then ``tail``.

    Values longer than 4 bytes go after the IFD, ``tail`` after them.
    """
    import struct

    values_at = 8 + 2 + 12 * len(entries) + 4
    table, values = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, kind, count, values_at + len(values))
            values += value
    return b"II*\0" + struct.pack("<I", 8) + table + b"\0\0\0\0" + values + tail


def jpeg_with_bad_exif() -> bytes:
    """A valid JPEG whose EXIF has Orientation and a ResolutionUnit stored as text."""
    import struct

    exif = tiff_ifd([(0x0112, SHORT, 1, struct.pack("<H", 6)), (0x0128, ASCII, 7, b"inches\0")])
    return encode(random_image(30), "JPEG", exif=b"Exif\0\0" + exif)


def tiff_2x2(*, text_strip_offsets: bool = False) -> bytes:
    """A 2x2 uncompressed RGB TIFF; optionally with its StripOffsets tag stored as text."""
    import struct

    pixels = bytes(range(12))

    def entries(strip_offsets: tuple[int, int, bytes]) -> list[tuple[int, int, int, bytes]]:
        return [
            (256, SHORT, 1, struct.pack("<H", 2)),  # width
            (257, SHORT, 1, struct.pack("<H", 2)),  # height
            (258, SHORT, 3, struct.pack("<HHH", 8, 8, 8)),  # bits per sample
            (259, SHORT, 1, struct.pack("<H", 1)),  # no compression
            (262, SHORT, 1, struct.pack("<H", 2)),  # RGB
            (273, *strip_offsets),
            (277, SHORT, 1, struct.pack("<H", 3)),  # samples per pixel
            (278, SHORT, 1, struct.pack("<H", 2)),  # rows per strip
            (279, LONG, 1, struct.pack("<I", len(pixels))),  # strip byte counts
        ]

    if text_strip_offsets:
        return tiff_ifd(entries((ASCII, 4, b"abc\0")), tail=pixels)
    start = len(tiff_ifd(entries((LONG, 1, b"\0\0\0\0"))))  # the strip follows the IFD
    return tiff_ifd(entries((LONG, 1, struct.pack("<I", start))), tail=pixels)


def mpo_bytes(seed: int) -> bytes:
    """A camera-style JPEG with a multi-picture block: the photo, then a smaller second picture."""
    return encode(
        random_image(seed),
        "MPO",
        save_all=True,
        append_images=[random_image(seed + 1, size=(24, 20))],
    )


class LambdaContext:
    """The attributes of Lambda's context object that the handlers and Powertools read."""

    function_name = "image-search-test"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:image-search-test"

    def __init__(self, request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678") -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def metadata_for(keys: list[str], *, sorted_by: str = "folder") -> Metadata:
    """A build's metadata listing ``keys`` (each in its top-level folder), in the given order."""
    items = [
        Item(key=key, folder=key.split("/")[0], etag=f"e{i}", size=i) for i, key in enumerate(keys)
    ]
    return Metadata(
        build_id="b1",
        model="m",
        dim=4,
        index_type="flat",
        count=len(items),
        bucket="bucket",
        folders=folder_ranges(items),
        items=items,
        sorted_by=sorted_by,  # type: ignore[arg-type]
    )


# ---- camera photos: JPEGs whose EXIF says when and with what they were taken -----------------

EXIF_TAGS = {
    "make": (None, 0x010F),
    "model": (None, 0x0110),
    "orientation": (None, 0x0112),
    "date_time": (None, 0x0132),
    "original": (0x8769, 0x9003),
    "digitized": (0x8769, 0x9004),
    "offset": (0x8769, 0x9011),
}


def camera_jpeg(seed: int, *, size: tuple[int, int] = (48, 40), **tags: object) -> bytes:
    """A JPEG of ``random_image(seed)`` whose EXIF holds ``tags`` (names in ``EXIF_TAGS``)."""
    exif = Image.Exif()
    for name, value in tags.items():
        ifd, tag = EXIF_TAGS[name]
        (exif if ifd is None else exif.get_ifd(ifd))[tag] = value
    return encode(random_image(seed, size=size), "JPEG", exif=exif.tobytes())


def malformed_exif_jpegs() -> dict[str, bytes]:
    """Files met in the wild, by what is wrong with their EXIF: each still a picture that decodes
    (``jpeg_with_bad_exif`` too: its pixels are turned as its orientation says)."""
    import struct

    wrong_types = tiff_ifd(
        [
            (0x010F, LONG, 1, struct.pack("<I", 7)),  # Make as a number
            (0x0112, ASCII, 4, b"six\0"),  # Orientation as text
            (0x0132, SHORT, 1, struct.pack("<H", 2024)),  # a date as a number
        ]
    )
    return {
        "zero-date.jpg": camera_jpeg(40, original="0000:00:00 00:00:00", make="Sony"),
        "blank-date.jpg": camera_jpeg(41, original="    :  :     :  :  "),
        "impossible-date.jpg": camera_jpeg(42, original="2024:13:45 25:61:00", offset="+99:99"),
        "huge-strings.jpg": camera_jpeg(43, make="A" * 30_000, model="B" * 20_000),
        "wrong-types.jpg": encode(random_image(44), "JPEG", exif=b"Exif\0\0" + wrong_types),
        "cut-exif.jpg": encode(random_image(45), "JPEG", exif=b"Exif\0\0II*\0\x08\0\0\0\xff\xff"),
    }
