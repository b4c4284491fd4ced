"""The build ``current.json`` names, read and checked before a new build reuses it.

A previous build the service could not load (an unreadable pointer, a missing or corrupt
metadata, index or embeddings file) must not stop the next build: it is reported in one warning
and the new build starts from scratch, which also replaces it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from image_search.errors import IndexMismatchError
from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import artefacts, s3
from image_search.storage.layout import pointer_key
from image_search.storage.manifest import Metadata, Pointer

LOG = logging.getLogger(__name__)

# How a damaged file shows: missing (ClientError), not JSON/npy/FAISS (ValueError, which
# includes pydantic's ValidationError, RuntimeError from FAISS, EOFError, OSError), or files
# that disagree (IndexMismatchError).
DAMAGE = (ClientError, ValueError, RuntimeError, EOFError, OSError, IndexMismatchError)


@dataclass(frozen=True)
class Previous:
    """What the last build left: the pointer's ETag (for the conditional publish), and its
    pointer, metadata and vectors when they are usable."""

    pointer_etag: str | None = None
    pointer: Pointer | None = None
    metadata: Metadata | None = None
    vectors: Vectors = field(default_factory=lambda: artefacts.EMPTY_VECTORS)


def read_previous(client: s3.S3Client, *, bucket: str, index_prefix: str) -> Previous:
    found = s3.get_tagged(client, bucket=bucket, key=pointer_key(index_prefix))
    if found is None:
        return Previous()
    data, etag = found
    try:
        pointer = Pointer.model_validate_json(data)
        metadata, vectors = _load_checked(client, bucket=bucket, pointer=pointer)
    except DAMAGE as exc:
        LOG.warning(
            "the current build is unusable (%s: %s); building everything from scratch",
            type(exc).__name__,
            _first_line(exc),
        )
        return Previous(pointer_etag=etag)
    return Previous(pointer_etag=etag, pointer=pointer, metadata=metadata, vectors=vectors)


def _load_checked(
    client: s3.S3Client, *, bucket: str, pointer: Pointer
) -> tuple[Metadata, Vectors]:
    """The build's metadata and vectors, after checking that its three files agree, as the
    service does when it loads them."""
    metadata, vectors = artefacts.load_vectors(client, bucket=bucket, pointer=pointer)
    index = faiss_index.from_bytes(s3.get_bytes(client, bucket=bucket, key=pointer.index_key))
    metadata.check(index_count=index.ntotal, index_dim=index.d)
    return metadata, vectors


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
