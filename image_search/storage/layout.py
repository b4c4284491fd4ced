"""Where a build's files live under the index prefix.

::

    <prefix>builds/<build_id>/image_faiss_index.bin, image_metadata.json, embeddings.npy,
                              catalog.json, keys.bin, key_offsets.npy, key_order.npy,
                              rerank.npz, rerank_codes.npy (ivf-pq)
    <prefix>current.json          the pointer, written last so readers never see half a build
    <prefix>work/checkpoint.npz   vectors embedded by a build that has not published yet
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from image_search.storage.manifest import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    METADATA_FILE,
    POINTER_FILE,
    Pointer,
)


def new_build_id() -> str:
    # Sortable by time, unique across concurrent builders.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def builds_prefix(index_prefix: str) -> str:
    return f"{index_prefix}builds/"


def pointer_key(index_prefix: str) -> str:
    return index_prefix + POINTER_FILE


def checkpoint_key(index_prefix: str) -> str:
    return f"{index_prefix}work/checkpoint.npz"


def pointer_for(index_prefix: str, build_id: str) -> Pointer:
    """The pointer naming the files of build ``build_id``."""
    folder = f"{builds_prefix(index_prefix)}{build_id}/"
    return Pointer(
        build_id=build_id,
        index_key=folder + INDEX_FILE,
        metadata_key=folder + METADATA_FILE,
        embeddings_key=folder + EMBEDDINGS_FILE,
    )
