"""The int8 gate: how much a quantised export moves the rankings of fp32 on the user's own images.

There are no labelled data and usually no real weights to measure accuracy with, so the gate
measures agreement instead: the share of fp32's top 10 that int8 still returns, for every sampled
image as a query (image -> image) and for prompts built from the bucket's folder names (text ->
image), among the sampled images. What it can and cannot tell is in docs/models.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from image_search.errors import ConfigError, ImageSearchError
from image_search.model import images
from image_search.model.embedder import Embedder
from image_search.model.vectors import Vectors
from image_search.storage import s3

LOG = logging.getLogger(__name__)

K = 10
DEFAULT_SAMPLE = 256
# A quantised export passes when int8 keeps at least 90 % of fp32's top 10, for images and for
# texts: the bound the project holds its approximate indexes to against exact search at 10M
# (recall@10 >= 0.9; >= 0.95 at 1M, README). int8 may cost what the index type already may; more
# reorders results visibly (docs/models.md says what the figure can and cannot tell).
DEFAULT_MIN_OVERLAP = 0.9
# Large images are decoded reduced: the gate needs what the model sees, not the full pixels.
SAMPLE_MIN_SIDE = 448
SAMPLE_MAX_PIXELS = 40_000_000


@dataclass(frozen=True, slots=True)
class Sample:
    keys: list[str]
    pictures: list[Image.Image]
    prompts: list[str]
    unreadable: int  # sampled keys that were not decodable images (skipped, counted)


@dataclass(frozen=True, slots=True)
class Overlap:
    image: float
    text: float | None  # None when the sample has no folder names to build prompts from

    def passes(self, threshold: float) -> bool:
        return self.image >= threshold and (self.text is None or self.text >= threshold)

    def line(self) -> str:
        text = "n/a" if self.text is None else f"{self.text:.2f}"
        return f"overlap@{K} image={self.image:.2f} text={text}"


def sample_bucket(url: str, *, size: int, client: s3.S3Client) -> Sample:
    """Up to ``size`` images under ``url`` (``s3://bucket/prefix/``), spread evenly over its keys
    in order, so every run of the check sees the same images and every folder contributes."""
    if not url.startswith("s3://") or size < K + 1:
        raise ConfigError(f"--check takes s3://bucket/prefix/ and --sample of at least {K + 1}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    keys = sorted(
        item["Key"]
        for item in s3.list_objects(client, bucket=bucket, prefix=prefix)
        if s3.is_image_key(item["Key"])
    )
    if len(keys) < K + 1:
        raise ConfigError(f"{url} holds {len(keys)} images; the check needs at least {K + 1}")
    chosen = [keys[i] for i in np.linspace(0, len(keys) - 1, min(size, len(keys))).astype(int)]
    kept, pictures = [], []
    for key in dict.fromkeys(chosen):
        data = s3.get_bytes(client, bucket=bucket, key=key)
        try:
            pictures.append(
                images.decode(data, max_pixels=SAMPLE_MAX_PIXELS, min_side=SAMPLE_MIN_SIDE)
            )
        except ImageSearchError as exc:
            LOG.warning("check: skipped %s (%s)", key, exc)
            continue
        kept.append(key)
    if len(kept) < K + 1:
        raise ConfigError(f"only {len(kept)} of the sampled images under {url} could be decoded")
    return Sample(kept, pictures, prompts(kept, prefix=prefix), len(chosen) - len(kept))


def prompts(keys: Sequence[str], *, prefix: str) -> list[str]:
    """``a photo of <folder>`` for each distinct folder name holding a key (below ``prefix``)."""
    names = set()
    for key in keys:
        folder = key[len(prefix) :].rpartition("/")[0].rpartition("/")[2]
        words = " ".join(re.split(r"[\s_\-.]+", folder)).strip()
        if words:
            names.add(words)
    return [f"a photo of {name}" for name in sorted(names)]


def compare(reference: Embedder, candidate: Embedder, sample: Sample) -> Overlap:
    """Top-10 agreement of ``candidate`` with ``reference`` on ``sample``."""
    before, after = reference.embed_images(sample.pictures), candidate.embed_images(sample.pictures)
    image = mean_overlap(before, before, after, after, exclude_self=True)
    text = None
    if sample.prompts:
        queries_before = reference.embed_texts(sample.prompts)
        queries_after = candidate.embed_texts(sample.prompts)
        text = mean_overlap(queries_before, before, queries_after, after, exclude_self=False)
    return Overlap(image=image, text=text)


def mean_overlap(
    queries_a: Vectors,
    corpus_a: Vectors,
    queries_b: Vectors,
    corpus_b: Vectors,
    *,
    exclude_self: bool,
) -> float:
    """Mean over queries of |top-k under a ∩ top-k under b| / k (k = 10, or fewer candidates)."""
    top_a = _top(queries_a @ corpus_a.T, exclude_self=exclude_self)
    top_b = _top(queries_b @ corpus_b.T, exclude_self=exclude_self)
    shared = [len(set(a) & set(b)) / len(a) for a, b in zip(top_a, top_b, strict=True)]
    return float(np.mean(shared))


def _top(scores: Vectors, *, exclude_self: bool) -> list[list[int]]:
    scores = scores.astype(np.float64)
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)  # an image is not its own neighbour
    k = min(K, scores.shape[1] - (1 if exclude_self else 0))
    # A stable sort, so equal scores fall in the same order under both precisions.
    order = np.argsort(-scores, axis=1, kind="stable")
    return [row[:k].tolist() for row in order]
