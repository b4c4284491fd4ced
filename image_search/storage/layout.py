"""Where a build's files live under the index prefix.

::

    <prefix>builds/<build_id>/image_faiss_index.bin, image_metadata.json, embeddings.npy,
                              catalog.json, keys.bin, key_offsets.npy, key_order.npy,
                              rerank.npz, rerank_codes.npy (ivf-pq)
    <prefix>current.json          the pointer, written last so readers never see half a build
    <prefix>work/build/…          an unfinished build's plan and shards (build/work.py)
    <prefix>work/checkpoint.npz   left by earlier versions; the next merge deletes it
    <prefix>work/build-lease.json held by the one build running (storage/lease.py)
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from image_search.storage.manifest import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    METADATA_FILE,
    POINTER_FILE,
    Pointer,
)

# What new_build_id makes; pruning deletes nothing under builds/ that does not look like it.
BUILD_ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{6}")


def new_build_id() -> str:
    # Sortable by time, unique across concurrent builders.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def is_build_id(name: str) -> bool:
    return BUILD_ID.fullmatch(name) is not None


def builds_prefix(index_prefix: str) -> str:
    return f"{index_prefix}builds/"


def pointer_key(index_prefix: str) -> str:
    return index_prefix + POINTER_FILE


def checkpoint_key(index_prefix: str) -> str:
    """Where earlier versions saved an unfinished build's vectors (finished shards replace it)."""
    return f"{index_prefix}work/checkpoint.npz"


def lease_key(index_prefix: str) -> str:
    return f"{index_prefix}work/build-lease.json"


def beside(key: str, name: str) -> str:
    """The key of the file ``name`` in the same folder as ``key`` (a build's files share one)."""
    return f"{key.rpartition('/')[0]}/{name}"


def pointer_for(index_prefix: str, build_id: str) -> Pointer:
    """The pointer naming the files of build ``build_id``."""
    folder = f"{builds_prefix(index_prefix)}{build_id}/"
    return Pointer(
        build_id=build_id,
        index_key=folder + INDEX_FILE,
        metadata_key=folder + METADATA_FILE,
        embeddings_key=folder + EMBEDDINGS_FILE,
    )
