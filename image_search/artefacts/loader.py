"""Loading a published build back: the pointer, then the build's files through the local cache."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, overload

import numpy as np
from botocore.exceptions import ClientError

from image_search.artefacts import integrity
from image_search.artefacts.catalog import CHECKSUMMED, Catalog
from image_search.artefacts.catalog import FILES as CATALOG_FILES
from image_search.artefacts.location import IndexLocation, beside, local_folder
from image_search.artefacts.manifest import (
    INDEX_FILE,
    METADATA_FILE,
    PHOTOS_FILE,
    RERANK_CODES_FILE,
    RERANK_FILE,
    CatalogHeader,
    Listing,
    Metadata,
    Pointer,
    SegmentRef,
)
from image_search.artefacts.photos import PhotoColumns
from image_search.artefacts.segments import Segment, load_segment
from image_search.errors import ImageSearchError, IndexMismatchError
from image_search.index import faiss_index
from image_search.index.search_index import SearchIndex
from image_search.model.vectors import Vectors
from image_search.storage import checksum, s3
from image_search.storage.cache import fetch

LOG = logging.getLogger(__name__)

EMPTY_VECTORS = np.zeros((0, 0), dtype=np.float32)
# Segments fetched at once (two small GETs each): a cold start may find many.
SEGMENT_WORKERS = 8
Document = TypeVar("Document", bound=Listing)
# The local name of the re-rank codes once complete (raw rows, no .npy header).
LOCAL_CODES = "rerank_codes.u8"


@dataclass(frozen=True)
class LoadedBuild:
    """A published build ready to search: its catalog and its index."""

    metadata: Catalog
    index: SearchIndex

    @property
    def rows(self) -> Mapping[str, int]:
        """key → row, for looking an indexed image up by key."""
        return self.metadata.rows


def read_pointer(where: IndexLocation) -> Pointer | None:
    """The current pointer, or None when nothing has been published yet."""
    data = s3.get_bytes_if_present(where.client, bucket=where.bucket, key=where.pointer_key)
    return None if data is None else Pointer.model_validate_json(data)


def read_tagged_pointer(where: IndexLocation) -> tuple[Pointer, str] | None:
    """The current pointer and its ETag (for a write with If-Match), or None when absent."""
    tagged = s3.get_tagged(where.client, bucket=where.bucket, key=where.pointer_key)
    return None if tagged is None else (Pointer.model_validate_json(tagged[0]), tagged[1])


def read_pointer_if_changed(
    where: IndexLocation, *, etag: str | None
) -> tuple[Pointer, str] | s3.Unchanged | None:
    """The pointer and its ETag unless it still has ``etag`` (then ``s3.UNCHANGED``), None when
    nothing has been published yet."""
    found = s3.get_if_changed(where.client, bucket=where.bucket, key=where.pointer_key, etag=etag)
    if found is None or isinstance(found, s3.Unchanged):
        return found
    return Pointer.model_validate_json(found[0]), found[1]


def write_pointer(where: IndexLocation, pointer: Pointer, *, etag: str | None) -> str | None:
    """Point ``current.json`` at ``pointer`` only if it is still the one with ``etag`` (None: only
    if there is none yet); its new ETag, or None when another writer got there first."""
    return s3.put_if(
        where.client,
        bucket=where.bucket,
        key=where.pointer_key,
        data=pointer.document(),
        content_type="application/json",
        etag=etag,
    )


def load_build(where: IndexLocation, *, pointer: Pointer, cache_dir: Path) -> LoadedBuild:
    """The build ``pointer`` names, from the local cache when this process fetched it before.

    Every file is downloaded in parallel, then mapped into memory rather than parsed: the time
    after the download does not grow with the number of images. ivf-pq's re-rank codes are not
    downloaded here: they arrive list by list as queries need them (index/rerank.py).
    """
    local = local_folder(cache_dir, pointer.build_id)
    files = {pointer.index_key: local / INDEX_FILE}
    hashed: dict[str, str] = {}  # key → catalog file name, for the files checksummed
    if pointer.catalog_key is not None:
        files.update({beside(pointer.catalog_key, name): local / name for name in CATALOG_FILES})
        hashed = {beside(pointer.catalog_key, name): name for name in CHECKSUMMED}
        if pointer.photos_key is not None:
            files[pointer.photos_key] = local / PHOTOS_FILE
            hashed[pointer.photos_key] = PHOTOS_FILE
    else:  # published before the compact files existed
        files[pointer.metadata_key] = local / METADATA_FILE
    if pointer.rerank_key is not None:
        files[pointer.rerank_key] = local / RERANK_FILE
    started = time.perf_counter()
    fetched = fetch(where.client, bucket=where.bucket, files=files, checksums=hashed)
    opened = time.perf_counter()
    if pointer.catalog_key is not None:
        checksums = {hashed[key]: value for key, value in fetched.checksums.items()}
        catalog = Catalog.open(local, checksums=checksums)
    else:
        metadata = Metadata.model_validate_json((local / METADATA_FILE).read_bytes())
        # The per-item objects are made anyway here, so keys listed twice are checked too; the
        # compact catalog skips that check, which would cost what it exists to avoid.
        metadata.check_keys()
        catalog = Catalog.from_metadata(metadata)
    rerank_files = None
    if pointer.rerank_key is not None:
        codes_key = beside(pointer.rerank_key, RERANK_CODES_FILE)
        rerank_files = faiss_index.RerankFiles(
            layout=local / RERANK_FILE, codes=local / LOCAL_CODES, fetch=_ranges(where, codes_key)
        )
    index = faiss_index.open_local(local / INDEX_FILE, rerank_files=rerank_files)
    catalog.check(index_count=index.ntotal, index_dim=index.dim)
    LOG.info(
        "build %s: fetched %.1f MB in %.2f s, opened in %.3f s",
        pointer.build_id,
        fetched.bytes / 2**20,
        opened - started,
        time.perf_counter() - opened,
    )
    return LoadedBuild(catalog, index)


def lazy_keys(pointer: Pointer, *, cache_dir: Path) -> list[str]:
    """The keys of ``pointer``'s build that a server still reads while it serves: ivf-pq's re-rank
    codes until their local copy is complete. Pruning them breaks queries, not the load."""
    if pointer.rerank_key is None:
        return []
    if (local_folder(cache_dir, pointer.build_id) / LOCAL_CODES).is_file():
        return []
    return [beside(pointer.rerank_key, RERANK_CODES_FILE)]


def _ranges(where: IndexLocation, key: str) -> faiss_index.Fetch:
    def get(start: int, end: int) -> bytes:
        data, _ = s3.get_range(where.client, bucket=where.bucket, key=key, start=start, end=end)
        return data

    return get


@overload
def load_metadata(where: IndexLocation, *, pointer: Pointer) -> Metadata: ...
@overload
def load_metadata(
    where: IndexLocation, *, pointer: Pointer, document: type[Document]
) -> Document: ...
def load_metadata(
    where: IndexLocation, *, pointer: Pointer, document: type[Listing] = Metadata
) -> Listing:
    """A build's metadata as ``document``: ``Listing`` leaves out the items' photo fields
    (no object per photo; ``load_photos`` has them as columns)."""
    data = s3.get_bytes(where.client, bucket=where.bucket, key=pointer.metadata_key)
    if document is Listing:
        return Listing.read(data)
    return document.model_validate_json(data)


def load_photos(where: IndexLocation, *, pointer: Pointer) -> PhotoColumns | None:
    """The build's photo fields as columns (photos.npy and catalog.json's camera names), checked
    as the service checks them; None for a build published without them."""
    if pointer.photos_key is None or pointer.catalog_key is None:
        return None
    header = CatalogHeader.model_validate_json(
        s3.get_bytes(where.client, bucket=where.bucket, key=pointer.catalog_key)
    )
    data = s3.get_bytes(where.client, bucket=where.bucket, key=pointer.photos_key)
    integrity.verify_checksums(header, {PHOTOS_FILE: checksum.of_bytes(data)})
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:  # not an .npy file, or cut short
        raise IndexMismatchError(f"build {pointer.build_id}: photos.npy is unreadable") from exc
    if header.cameras is None:
        raise IndexMismatchError(f"build {pointer.build_id}: catalog.json names no cameras")
    integrity.check_photos(header, array, cameras=header.cameras)
    return PhotoColumns(array, header.cameras)


@overload
def load_vectors(where: IndexLocation, *, pointer: Pointer) -> tuple[Metadata, Vectors]: ...
@overload
def load_vectors(
    where: IndexLocation, *, pointer: Pointer, document: type[Document]
) -> tuple[Document, Vectors]: ...
def load_vectors(
    where: IndexLocation, *, pointer: Pointer, document: type[Listing] = Metadata
) -> tuple[Listing, Vectors]:
    """A build's metadata (as ``document``, see ``load_metadata``) and raw vectors, for an
    incremental build to reuse; vectors that do not match the metadata raise
    ``IndexMismatchError``."""
    metadata = load_metadata(where, pointer=pointer, document=document)
    if pointer.embeddings_key is None:
        return metadata, EMPTY_VECTORS
    data = s3.get_bytes(where.client, bucket=where.bucket, key=pointer.embeddings_key)
    vectors = np.load(io.BytesIO(data), allow_pickle=False)
    if vectors.shape != (metadata.count, metadata.dim) or not np.isfinite(vectors).all():
        raise IndexMismatchError(
            f"build {metadata.build_id}: embeddings of shape {vectors.shape} do not match "
            f"{metadata.count} x {metadata.dim}"
        )
    return metadata, vectors.astype(np.float32, copy=False)


@dataclass(frozen=True)
class Segments:
    """Segments read for serving, in the pointer's order: all of them, or those before the
    first that could not be read (``problem`` says why); a later one never applies without the
    ones before it."""

    loaded: list[tuple[Segment, Vectors]]
    problem: str | None = None


def load_segments(where: IndexLocation, refs: Sequence[SegmentRef], *, base: Catalog) -> Segments:
    """``refs``' segments, each checked like a build (artefacts/segments.py) and against
    ``base``: made on it, with its model and width. Fetched a few at a time."""

    def load(ref: SegmentRef) -> tuple[Segment, Vectors]:
        segment, vectors = load_segment(where, ref, model=base.model, dim=base.dim)
        if segment.base_build_id != base.build_id:
            raise IndexMismatchError(
                f"segment {ref.segment_id!r} applies on build {segment.base_build_id}, not on "
                f"build {base.build_id}"
            )
        return segment, vectors

    loaded: list[tuple[Segment, Vectors]] = []
    with ThreadPoolExecutor(SEGMENT_WORKERS, thread_name_prefix="segments") as pool:
        futures = [pool.submit(load, ref) for ref in refs]
        for ref, future in zip(refs, futures, strict=True):
            try:
                loaded.append(future.result())
            except (ImageSearchError, ValueError, ClientError) as exc:
                for rest in futures:
                    rest.cancel()
                return Segments(loaded, f"segment {ref.segment_id} could not be loaded: {exc}")
    return Segments(loaded)
