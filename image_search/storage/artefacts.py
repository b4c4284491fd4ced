"""A build's artefacts in S3: publishing them (pointer last) and loading them back."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from image_search.errors import IndexMismatchError, PublishConflictError
from image_search.index import faiss_index, rerank
from image_search.model.vectors import Vectors
from image_search.storage import s3
from image_search.storage.cache import fetch
from image_search.storage.catalog import FILES as CATALOG_FILES
from image_search.storage.catalog import Catalog
from image_search.storage.layout import beside, pointer_for, pointer_key
from image_search.storage.manifest import (
    CATALOG_FILE,
    INDEX_FILE,
    METADATA_FILE,
    RERANK_CODES_FILE,
    RERANK_FILE,
    Metadata,
    Pointer,
)
from image_search.storage.prune import prune

LOG = logging.getLogger(__name__)

EMPTY_VECTORS = np.zeros((0, 0), dtype=np.float32)
BINARY = "application/octet-stream"
# Files past this size go up as a multipart upload read straight from the arrays.
UPLOAD_PART_BYTES = 64 * 2**20
# The local name of the re-rank codes once complete (raw rows, no .npy header).
LOCAL_CODES = "rerank_codes.u8"


@dataclass(frozen=True)
class LoadedBuild:
    """A published build ready to search: its catalog and its index."""

    metadata: Catalog
    index: faiss_index.Index

    @property
    def rows(self) -> Mapping[str, int]:
        """key → row, for looking an indexed image up by key."""
        return self.metadata.rows


def publish(
    client: s3.S3Client,
    *,
    bucket: str,
    index_prefix: str,
    metadata: Metadata,
    index: faiss_index.Index,
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
    catalog = Catalog.from_metadata(metadata)
    catalog_key = beside(pointer.index_key, CATALOG_FILE)
    pointer = pointer.model_copy(update={"catalog_key": catalog_key})
    assert pointer.embeddings_key is not None

    def put(key: str, parts: list[bytes | memoryview], content_type: str = BINARY) -> None:
        s3.put_buffers(
            client,
            bucket=bucket,
            key=key,
            parts=parts,
            content_type=content_type,
            part_bytes=UPLOAD_PART_BYTES,
        )

    files = [pointer.embeddings_key, pointer.index_key, pointer.metadata_key]
    files += [beside(catalog_key, name) for name in CATALOG_FILES]
    if metadata.duplicates is not None:  # uploaded by the build beforehand
        files.append(metadata.duplicates.key)
    put(pointer.embeddings_key, _npy_parts(np.ascontiguousarray(vectors, dtype=np.float32)))
    put(pointer.index_key, [faiss_index.serialised(index).data])
    if isinstance(index, faiss_index.Reranked):
        rerank_key = beside(pointer.index_key, RERANK_FILE)
        pointer = pointer.model_copy(update={"rerank_key": rerank_key})
        codes = _npy_parts(index.rerank.codes)
        buffer = io.BytesIO()
        rerank.save_layout(index.rerank.layout, buffer, codes_offset=len(codes[0]))
        codes_key = beside(rerank_key, RERANK_CODES_FILE)
        files += [codes_key, rerank_key]
        put(codes_key, codes)
        put(rerank_key, [buffer.getvalue()])
    for name, data in catalog.files().items():
        put(
            beside(catalog_key, name),
            [data],
            "application/json" if name == CATALOG_FILE else BINARY,
        )
    put(pointer.metadata_key, [metadata.model_dump_json().encode()], "application/json")
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
    """The build ``pointer`` names, from the local cache when this process fetched it before.

    Every file is downloaded in parallel, then mapped into memory rather than parsed: the time
    after the download does not grow with the number of images. ivf-pq's re-rank codes are not
    downloaded here: they arrive list by list as queries need them (index/rerank.py).
    """
    local = cache_dir / pointer.build_id
    files = {pointer.index_key: local / INDEX_FILE}
    if pointer.catalog_key is not None:
        files.update({beside(pointer.catalog_key, name): local / name for name in CATALOG_FILES})
    else:  # published before the compact files existed
        files[pointer.metadata_key] = local / METADATA_FILE
    if pointer.rerank_key is not None:
        files[pointer.rerank_key] = local / RERANK_FILE
    started = time.perf_counter()
    fetched = fetch(client, bucket=bucket, files=files)
    opened = time.perf_counter()
    if pointer.catalog_key is not None:
        catalog = Catalog.open(local)
    else:
        metadata = Metadata.model_validate_json((local / METADATA_FILE).read_bytes())
        # The per-item objects are made anyway here, so keys listed twice are checked too; the
        # compact catalog skips that check, which would cost what it exists to avoid.
        metadata.check_keys()
        catalog = Catalog.from_metadata(metadata)
    stored = faiss_index.read(local / INDEX_FILE)
    index: faiss_index.Index = stored
    if pointer.rerank_key is not None:
        codes_key = beside(pointer.rerank_key, RERANK_CODES_FILE)
        index = _with_rerank(client, bucket=bucket, key=codes_key, index=stored, local=local)
    catalog.check(index_count=index.ntotal, index_dim=index.d)
    LOG.info(
        "build %s: fetched %.1f MB in %.2f s, opened in %.3f s",
        pointer.build_id,
        fetched / 2**20,
        opened - started,
        time.perf_counter() - opened,
    )
    return LoadedBuild(catalog, index)


def _with_rerank(
    client: s3.S3Client, *, bucket: str, key: str, index: faiss.Index, local: Path
) -> faiss_index.Reranked:
    layout, offset = rerank.load_layout(local / RERANK_FILE)

    def codes(start: int, end: int) -> bytes:
        data, _ = s3.get_range(
            client, bucket=bucket, key=key, start=offset + start, end=offset + end
        )
        return data

    store = rerank.open_local(layout, path=local / LOCAL_CODES, fetch=codes)
    store.fill_in_background()
    return faiss_index.Reranked(index, store)


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


def _npy_parts(array: np.ndarray) -> list[bytes | memoryview]:
    """A ``.npy`` file as its header and the array's own memory (no copy of the data)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return [header.getvalue(), np.ascontiguousarray(array).data.cast("B")]
