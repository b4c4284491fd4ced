"""Combined queries: texts, indexed images and uploads, some of them to move away from, as one
query vector.

The query vector is the normalised weighted sum of the parts' normalised embeddings, the negative
parts' subtracted: ``normalise(Σ wᵢ·vᵢ − Σ wⱼ·vⱼ)``. Every part counts by its weight alone, never
by how long its embedding happened to be, so a text and an image of weight 1 pull equally.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from image_search.errors import InvalidQueryError
from image_search.model.vectors import Vectors, normalise
from image_search.serve.filters import NO_FILTER, PhotoFilter

# A sum shorter than this has no direction left worth searching (the parts cancel out).
MIN_NORM = 1e-4


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a query: exactly one of ``text``, ``key`` (an indexed image) or ``image``
    (an image's bytes), counted ``weight`` times."""

    text: str | None = None
    key: str | None = None
    image: bytes | None = None
    weight: float = 1.0

    def identity(self) -> list[object]:
        """What the part is, short: an image by its digest."""
        image = None if self.image is None else hashlib.sha256(self.image).hexdigest()
        return [self.text, self.key, image, self.weight]


@dataclass(frozen=True, slots=True)
class Query:
    """What to look for, and where (``folder`` "" or "*": every folder; no folder detection;
    ``filters``: only photos matching them)."""

    positive: tuple[Part, ...]
    negative: tuple[Part, ...] = ()
    folder: str = ""
    prefix: str = ""
    filters: PhotoFilter = NO_FILTER
    min_score: float | None = None

    @property
    def parts(self) -> tuple[Part, ...]:
        return self.positive + self.negative

    @property
    def weights(self) -> list[float]:
        """Each part's weight in ``parts`` order, negative for the negative parts."""
        return [p.weight for p in self.positive] + [-p.weight for p in self.negative]

    @property
    def upload_bytes(self) -> int:
        return sum(len(part.image) for part in self.parts if part.image is not None)

    def fingerprint(self) -> str:
        """A digest of everything that decides the ranking: a cursor is only valid for it."""
        canonical = json.dumps(
            [
                [part.identity() for part in self.positive],
                [part.identity() for part in self.negative],
                self.folder if self.folder != "*" else "",
                self.prefix,
                self.filters.identity(),
                self.min_score,
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def combine(vectors: Vectors, weights: Sequence[float]) -> Vectors:
    """``normalise(Σ weights[i] · normalise(vectors[i]))``, shape (1, dim)."""
    total = np.asarray(weights, dtype=np.float64) @ normalise(vectors).astype(np.float64)
    norm = float(np.linalg.norm(total))
    if not norm >= MIN_NORM:
        raise InvalidQueryError(
            "the query's parts cancel out (the negative ones outweigh the rest in every "
            "direction): lower the negative weights or add positive parts"
        )
    return normalise(total.reshape(1, -1))
