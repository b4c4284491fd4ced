"""Synthetic clustered unit vectors that stand in for CLIP embeddings of a photo collection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from image_search.model.vectors import Vectors, normalise

DIM = 512
# Photos come in themes (many shots of one scene): points spread around a theme's centre. The
# spread has a decaying spectrum in a random basis, because real embeddings use far fewer
# effective dimensions than 512, and no axis is special (which would flatter or punish PQ).
POINTS_PER_CLUSTER = 1_000
SPREAD = 0.6
CHUNK = 100_000


@dataclass(frozen=True)
class _Clusters:
    centres: np.ndarray
    scale: np.ndarray
    rotation: np.ndarray

    @classmethod
    def make(cls, count: int, dim: int) -> _Clusters:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((max(1, count // POINTS_PER_CLUSTER), dim), dtype=np.float32)
        scale = SPREAD * np.sqrt(dim / 8) * np.arange(1, dim + 1, dtype=np.float32) ** -0.5
        rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        return cls(centres, scale.astype(np.float32), rotation.astype(np.float32))

    def sample(
        self, count: int, rng: np.random.Generator, *, out: Vectors | None = None
    ) -> Vectors:
        if out is None:
            out = np.empty((count, self.centres.shape[1]), dtype=np.float32)
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            noise = rng.standard_normal((size, out.shape[1]), dtype=np.float32) * self.scale
            picked = self.centres[rng.integers(0, len(self.centres), size)]
            out[start : start + size] = normalise(picked + noise @ self.rotation)
        return out


def clustered(count: int, *, dim: int = DIM) -> Vectors:
    """``count`` unit vectors around ``count / POINTS_PER_CLUSTER`` random centres."""
    return _Clusters.make(count, dim).sample(count, np.random.default_rng(1))


def clustered_file(count: int, path: Path, *, dim: int = DIM) -> Vectors:
    """``clustered(count)``, the same vectors, written chunk by chunk to an ``.npy`` at ``path``
    and returned memory-mapped: 10M x 512 is 20 GB, more than the machine should hold at once."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, dim))
    _Clusters.make(count, dim).sample(count, np.random.default_rng(1), out=out)
    out.flush()
    return np.load(path, mmap_mode="r")


def queries(base_count: int, count: int, *, dim: int = DIM) -> Vectors:
    """Held-out queries from the same clusters as ``clustered(base_count)``, none of them in it."""
    return _Clusters.make(base_count, dim).sample(count, np.random.default_rng(2))
