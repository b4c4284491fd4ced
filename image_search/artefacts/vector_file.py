"""A ``.npy`` file of vectors read from S3 as untrusted input, and the checks its rows must pass.

Shared by the merge (a shard's result, build/shard_check.py) and by everything that reads a
segment (artefacts/segments.py): whoever may write those folders can put any file there, and
the rows end up published under image keys. So a vectors file is read with a size bound (a
huge file must not make a reader download it), parsed without pickles, and its rows must be
finite, of unit length (every embedder L2-normalises) and of the expected width.
"""

from __future__ import annotations

import io

import numpy as np

from image_search.model.vectors import Vectors
from image_search.storage import s3

# float32 normalisation leaves |norm - 1| near 1e-7; uninitialised or hand-made rows miss by far.
NORM_TOLERANCE = 1e-3
# Wider than any CLIP-family model: it only bounds what a vectors file may make a reader download.
MAX_DIM = 8192
NPY_HEADER_BYTES = 4096


class BadVectorsError(ValueError):
    """A vectors file that is missing, too large, unreadable or holds rows no embedder makes."""


def size_limit(rows: int) -> int:
    """The most bytes a ``.npy`` file of ``rows`` float32 rows of any accepted width takes."""
    return rows * MAX_DIM * 4 + NPY_HEADER_BYTES


def read_npy(client: s3.S3Client, *, bucket: str, key: str, rows: int) -> tuple[Vectors, bytes]:
    """The float array in ``key`` (as float32) and the file's bytes (for a checksum), reading
    no more than a file of ``rows`` rows may hold."""
    limit = size_limit(rows)
    try:
        data, size = s3.get_range(client, bucket=bucket, key=key, start=0, end=limit + 1)
    except Exception as exc:
        if s3.is_missing(exc):
            raise BadVectorsError("its vectors file is missing") from exc
        raise  # S3 unavailable: the caller fails and is retried, nothing is concluded
    if size > limit:
        raise BadVectorsError(f"its vectors file has {size} bytes, more than {limit}")
    try:
        vectors = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises whatever its parsers meet: ValueError, EOFError, …
        raise BadVectorsError(f"its vectors file is unreadable ({type(exc).__name__})") from exc
    if not isinstance(vectors, np.ndarray) or vectors.dtype.kind != "f":
        raise BadVectorsError("its vectors file holds no float array")
    return vectors.astype(np.float32, copy=False), data


def check_vectors(vectors: Vectors, *, rows: int, dim: int | None) -> None:
    """``rows`` finite unit rows of width ``dim`` (None: any width, for the caller to compare)."""
    if not rows:
        return  # nothing embedded: the shape of nothing does not matter
    if (
        vectors.ndim != 2
        or vectors.shape[0] != rows
        or (dim is not None and vectors.shape[1] != dim)
    ):
        raise BadVectorsError(
            f"its vectors have shape {vectors.shape}, not ({rows}, {dim or 'the build width'})"
        )
    if not np.isfinite(vectors).all():
        raise BadVectorsError("its vectors are not all finite")
    if not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=NORM_TOLERANCE):
        raise BadVectorsError("its vectors are not all of unit length")
