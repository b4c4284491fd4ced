"""A build's artefacts in S3: publishing them (pointer last) and loading them back."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np

from image_search.errors import IndexMismatchError, PublishConflictError
from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import s3
from image_search.storage.cache import cached
from image_search.storage.layout import pointer_for, pointer_key
from image_search.storage.manifest import INDEX_FILE, METADATA_FILE, Metadata, Pointer
from image_search.storage.prune import prune

LOG = logging.getLogger(__name__)

EMPTY_VECTORS = np.zeros((0, 0), dtype=np.float32)
BINARY = "application/octet-stream"


@dataclass(frozen=True)
class LoadedBuild:
    """A published build in memory: its metadata and its FAISS index."""

    metadata: Metadata
    index: faiss.Index

    @cached_property
    def rows(self) -> dict[str, int]:
        """key → row, for looking an indexed image up by key."""
        return {item.key: row for row, item in enumerate(self.metadata.items)}


def publish(
    client: s3.S3Client,
    *,
    bucket: str,
    index_prefix: str,
    metadata: Metadata,
    index: faiss.Index,
    vectors: Vectors,
    keep_builds: int,
    pointer_etag: str | None,
) -> Pointer:
    """Upload a build's files, then switch ``current.json`` to it, then prune old builds.

    If any upload fails the pointer still names the previous build, which stays intact.
    ``pointer_etag`` is the ETag of ``current.json`` when the build read it (None: there was
    none). The pointer is only replaced if it is still that one, so a slower builder can never
    replace a newer build with an older one: it gets ``PublishConflictError`` and prunes nothing.
    """
    pointer = pointer_for(index_prefix, metadata.build_id)
    assert pointer.embeddings_key is not None
    files = [pointer.embeddings_key, pointer.index_key, pointer.metadata_key]
    if metadata.duplicates is not None:  # uploaded by the build beforehand
        files.append(metadata.duplicates.key)
    put = s3.put_bytes
    put(client, bucket=bucket, key=pointer.embeddings_key, data=_npy(vectors), content_type=BINARY)
    put(
        client,
        bucket=bucket,
        key=pointer.index_key,
        data=faiss_index.to_bytes(index),
        content_type=BINARY,
    )
    put(
        client,
        bucket=bucket,
        key=pointer.metadata_key,
        data=metadata.model_dump_json().encode(),
        content_type="application/json",
    )
    replaced = s3.put_if(
        client,
        bucket=bucket,
        key=pointer_key(index_prefix),
        data=pointer.model_dump_json().encode(),
        content_type="application/json",
        etag=pointer_etag,
    )
    if replaced is None and _named(client, bucket=bucket, index_prefix=index_prefix) != pointer:
        s3.delete_keys(client, bucket=bucket, keys=files)  # ours, never published
        raise PublishConflictError(
            f"{pointer_key(index_prefix)} changed while this build ran (another build published); "
            f"build {metadata.build_id} was not published: run the build again"
        )
    LOG.info("published build %s (%d vectors)", metadata.build_id, metadata.count)
    prune(
        client, bucket=bucket, index_prefix=index_prefix, keep=keep_builds, current=pointer.build_id
    )
    return pointer


def _named(client: s3.S3Client, *, bucket: str, index_prefix: str) -> Pointer | None:
    """The pointer now in S3, or None when it is absent or unreadable."""
    try:
        return read_pointer(client, bucket=bucket, index_prefix=index_prefix)
    except ValueError:
        return None


def read_pointer(client: s3.S3Client, *, bucket: str, index_prefix: str) -> Pointer | None:
    """The current pointer, or None when nothing has been published yet."""
    data = s3.get_bytes_if_present(client, bucket=bucket, key=pointer_key(index_prefix))
    return None if data is None else Pointer.model_validate_json(data)


def load(client: s3.S3Client, *, bucket: str, pointer: Pointer, cache_dir: Path) -> LoadedBuild:
    """The build ``pointer`` names, from the local cache when this process fetched it before."""
    local = cache_dir / pointer.build_id
    index_path = cached(client, bucket=bucket, key=pointer.index_key, path=local / INDEX_FILE)
    metadata_path = cached(
        client, bucket=bucket, key=pointer.metadata_key, path=local / METADATA_FILE
    )
    metadata = Metadata.model_validate_json(metadata_path.read_bytes())
    index = faiss_index.from_bytes(index_path.read_bytes())
    metadata.check(index_count=index.ntotal, index_dim=index.d)
    return LoadedBuild(metadata, index)


def load_vectors(client: s3.S3Client, *, bucket: str, pointer: Pointer) -> tuple[Metadata, Vectors]:
    """A build's metadata and raw vectors, for an incremental build to reuse; vectors that do
    not match the metadata raise ``IndexMismatchError``."""
    metadata = Metadata.model_validate_json(
        s3.get_bytes(client, bucket=bucket, key=pointer.metadata_key)
    )
    if pointer.embeddings_key is None:
        return metadata, EMPTY_VECTORS
    data = s3.get_bytes(client, bucket=bucket, key=pointer.embeddings_key)
    vectors = np.load(io.BytesIO(data), allow_pickle=False)
    if vectors.shape != (metadata.count, metadata.dim) or not np.isfinite(vectors).all():
        raise IndexMismatchError(
            f"build {metadata.build_id}: embeddings of shape {vectors.shape} do not match "
            f"{metadata.count} x {metadata.dim}"
        )
    return metadata, vectors.astype(np.float32, copy=False)


def _npy(vectors: Vectors) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()
