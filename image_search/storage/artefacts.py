"""Publishing and loading index artefacts in S3.

Layout under the index prefix::

    builds/<build_id>/image_faiss_index.bin, image_metadata.json, embeddings.npy
    current.json        the pointer, written last so readers never see half a build
    work/checkpoint.npz vectors embedded by a build that has not published yet
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import s3
from image_search.storage.manifest import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    METADATA_FILE,
    POINTER_FILE,
    Metadata,
    Pointer,
)

LOG = logging.getLogger(__name__)

EMPTY_VECTORS = np.zeros((0, 0), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Published:
    metadata: Metadata
    index: faiss.Index


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Vectors already embedded by an unfinished build, keyed by (key, etag)."""

    model: str
    keys: list[str]
    etags: list[str]
    vectors: Vectors


def new_build_id() -> str:
    # Sortable by time, unique across concurrent builders.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def builds_prefix(index_prefix: str) -> str:
    return f"{index_prefix}builds/"


def checkpoint_key(index_prefix: str) -> str:
    return f"{index_prefix}work/checkpoint.npz"


def publish(
    client: s3.S3Client,
    *,
    bucket: str,
    index_prefix: str,
    metadata: Metadata,
    index: faiss.Index,
    vectors: Vectors,
    keep_builds: int,
) -> Pointer:
    """Upload a build's files, then switch ``current.json`` to it, then prune old builds.

    If any upload fails the pointer still names the previous build, which stays intact.
    """
    folder = f"{builds_prefix(index_prefix)}{metadata.build_id}/"
    pointer = Pointer(
        build_id=metadata.build_id,
        index_key=folder + INDEX_FILE,
        metadata_key=folder + METADATA_FILE,
        embeddings_key=folder + EMBEDDINGS_FILE,
    )
    assert pointer.embeddings_key is not None
    put = s3.put_bytes
    put(
        client,
        bucket=bucket,
        key=pointer.embeddings_key,
        data=_npy(vectors),
        content_type="application/octet-stream",
    )
    put(
        client,
        bucket=bucket,
        key=pointer.index_key,
        data=faiss_index.to_bytes(index),
        content_type="application/octet-stream",
    )
    put(
        client,
        bucket=bucket,
        key=pointer.metadata_key,
        data=metadata.model_dump_json().encode(),
        content_type="application/json",
    )
    put(
        client,
        bucket=bucket,
        key=index_prefix + POINTER_FILE,
        data=pointer.model_dump_json().encode(),
        content_type="application/json",
    )
    LOG.info("published build %s (%d vectors)", metadata.build_id, metadata.count)
    prune(
        client,
        bucket=bucket,
        index_prefix=index_prefix,
        keep=keep_builds,
        current=metadata.build_id,
    )
    return pointer


def prune(client: s3.S3Client, *, bucket: str, index_prefix: str, keep: int, current: str) -> None:
    """Delete all but the newest ``keep`` builds; never the current one."""
    prefix = builds_prefix(index_prefix)
    by_build: dict[str, list[str]] = {}
    for obj in s3.list_objects(client, bucket=bucket, prefix=prefix):
        build_id = obj["Key"][len(prefix) :].split("/", 1)[0]
        by_build.setdefault(build_id, []).append(obj["Key"])
    stale = sorted(by_build, reverse=True)[keep:]
    doomed = [key for build_id in stale if build_id != current for key in by_build[build_id]]
    if doomed:
        s3.delete_keys(client, bucket=bucket, keys=doomed)
        LOG.info("pruned %d old build(s)", len([b for b in stale if b != current]))


def read_pointer(client: s3.S3Client, *, bucket: str, index_prefix: str) -> Pointer | None:
    """The current pointer, or None when nothing has been published yet."""
    try:
        data = s3.get_bytes(client, bucket=bucket, key=index_prefix + POINTER_FILE)
    except Exception as exc:
        if s3.is_missing(exc):
            return None
        raise
    return Pointer.model_validate_json(data)


def load(client: s3.S3Client, *, bucket: str, pointer: Pointer, cache_dir: Path) -> Published:
    """The build ``pointer`` names, from the local cache when this process fetched it before."""
    local = cache_dir / pointer.build_id
    index_path = _cached(client, bucket=bucket, key=pointer.index_key, path=local / INDEX_FILE)
    metadata_path = _cached(
        client, bucket=bucket, key=pointer.metadata_key, path=local / METADATA_FILE
    )
    metadata = Metadata.model_validate_json(metadata_path.read_bytes())
    index = faiss_index.from_bytes(index_path.read_bytes())
    metadata.check(index_count=index.ntotal, index_dim=index.d)
    return Published(metadata, index)


def load_vectors(client: s3.S3Client, *, bucket: str, pointer: Pointer) -> tuple[Metadata, Vectors]:
    """A build's metadata and raw vectors, for an incremental build to reuse."""
    metadata = Metadata.model_validate_json(
        s3.get_bytes(client, bucket=bucket, key=pointer.metadata_key)
    )
    if pointer.embeddings_key is None:
        return metadata, EMPTY_VECTORS
    data = s3.get_bytes(client, bucket=bucket, key=pointer.embeddings_key)
    vectors = np.load(io.BytesIO(data), allow_pickle=False)
    if vectors.shape[0] != metadata.count:
        LOG.warning("build %s: embeddings do not match metadata; not reusing", metadata.build_id)
        return metadata, EMPTY_VECTORS
    return metadata, vectors.astype(np.float32, copy=False)


def save_checkpoint(
    client: s3.S3Client, *, bucket: str, index_prefix: str, checkpoint: Checkpoint
) -> None:
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


def load_checkpoint(client: s3.S3Client, *, bucket: str, index_prefix: str) -> Checkpoint | None:
    try:
        data = s3.get_bytes(client, bucket=bucket, key=checkpoint_key(index_prefix))
    except Exception as exc:
        if s3.is_missing(exc):
            return None
        raise
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


def delete_checkpoint(client: s3.S3Client, *, bucket: str, index_prefix: str) -> None:
    s3.delete_keys(client, bucket=bucket, keys=[checkpoint_key(index_prefix)])


def _npy(vectors: Vectors) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()


def _cached(client: s3.S3Client, *, bucket: str, key: str, path: Path) -> Path:
    if path.is_file():
        return path
    data = s3.get_bytes(client, bucket=bucket, key=key)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a crash never leaves a partial file the next load would trust.
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(temp, path)
    return path
