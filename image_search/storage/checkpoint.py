"""Vectors embedded by a build that has not published yet, kept in one S3 object."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np

from image_search.model.vectors import Vectors
from image_search.storage import s3
from image_search.storage.layout import checkpoint_key

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Vectors already embedded by an unfinished build, keyed by (key, etag)."""

    model: str
    keys: list[str]
    etags: list[str]
    vectors: Vectors

    def merged_with(self, older: Checkpoint | None) -> Checkpoint:
        """This checkpoint plus the rows of ``older`` (same model) that it does not replace."""
        if older is None or older.model != self.model:
            return self
        fresh = set(zip(self.keys, self.etags, strict=True))
        keep = [
            row
            for row, pair in enumerate(zip(older.keys, older.etags, strict=True))
            if pair not in fresh
        ]
        if not keep:
            return self
        return Checkpoint(
            model=self.model,
            keys=self.keys + [older.keys[row] for row in keep],
            etags=self.etags + [older.etags[row] for row in keep],
            vectors=np.concatenate([self.vectors, older.vectors[keep]]),
        )


def save(client: s3.S3Client, *, bucket: str, index_prefix: str, checkpoint: Checkpoint) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        model=np.array(checkpoint.model),
        keys=np.array(checkpoint.keys, dtype=str),
        etags=np.array(checkpoint.etags, dtype=str),
        vectors=checkpoint.vectors,
    )
    # One object, so a reader sees the whole checkpoint or the previous one, never a mix.
    s3.put_bytes(
        client,
        bucket=bucket,
        key=checkpoint_key(index_prefix),
        data=buffer.getvalue(),
        content_type="application/octet-stream",
    )


def load(client: s3.S3Client, *, bucket: str, index_prefix: str) -> Checkpoint | None:
    data = s3.get_bytes_if_present(client, bucket=bucket, key=checkpoint_key(index_prefix))
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return Checkpoint(
                model=str(npz["model"]),
                keys=[str(k) for k in npz["keys"]],
                etags=[str(e) for e in npz["etags"]],
                vectors=npz["vectors"].astype(np.float32, copy=False),
            )
    except (ValueError, KeyError, OSError) as exc:
        LOG.warning("ignoring unreadable checkpoint: %s", exc)
        return None


def delete(client: s3.S3Client, *, bucket: str, index_prefix: str) -> None:
    s3.delete_keys(client, bucket=bucket, keys=[checkpoint_key(index_prefix)])
