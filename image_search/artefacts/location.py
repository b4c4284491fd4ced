"""Where an index lives: one bucket and prefix, and every key name under it.

::

    <prefix>current.json          the pointer, written last so readers never see half a build
    <prefix>builds/<build_id>/image_faiss_index.bin, image_metadata.json, embeddings.npy,
                              catalog.json, keys.bin, key_offsets.npy, key_order.npy,
                              rerank.npz, rerank_codes.npy (ivf-pq), duplicates.json
    <prefix>segments/<segment_id>/vectors.npy, segment.json   a delta on a build (segments.py)
    <prefix>work/build/plans/<plan_id>/plan.json, shards.json   an unfinished build's plan
    <prefix>work/build/shards/<shard_id>/input.json, result.json, vectors-*.npy
    <prefix>work/build-lease.json held by the one build running (storage/lease.py)
    <prefix>work/checkpoint.npz   left by earlier versions; the next merge deletes it

Nothing else in the product spells a key under the prefix.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from image_search.artefacts.manifest import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    METADATA_FILE,
    POINTER_FILE,
    SEGMENT_FILE,
    SEGMENT_VECTORS_FILE,
    Pointer,
)
from image_search.errors import IndexMismatchError
from image_search.storage.s3 import S3Client

# What new_build_id makes; pruning deletes nothing under builds/ that does not look like it.
BUILD_ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{6}")
DUPLICATES_FILE = "duplicates.json"


def new_build_id() -> str:
    # Sortable by time, unique across concurrent builders.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def is_build_id(name: str) -> bool:
    return BUILD_ID.fullmatch(name) is not None


# A segment id has a build id's shape: sortable by time, and validated the same way before a key
# or a local path is made from it (the pointer, i.e. S3, names it).
new_segment_id = new_build_id
is_segment_id = is_build_id


def local_folder(cache_dir: Path, build_id: str) -> Path:
    """Where this process keeps ``build_id``'s files: a folder directly inside ``cache_dir``.

    The id is data from S3 (the pointer names it): one that is not a build id (``..``, an
    absolute path, a separator) or whose folder resolves elsewhere (a symlink) is refused, so
    nothing is written or deleted outside the cache.
    """
    if not is_build_id(build_id):
        raise IndexMismatchError(f"refusing build id {build_id!r}: not a build id")
    root = cache_dir.resolve()
    folder = (root / build_id).resolve()
    if folder.parent != root:
        raise IndexMismatchError(
            f"refusing build {build_id}: its local copy {folder} is outside {root}"
        )
    return folder


def beside(key: str, name: str) -> str:
    """The key of the file ``name`` in the same folder as ``key`` (a build's files share one)."""
    return f"{key.rpartition('/')[0]}/{name}"


@dataclass(frozen=True)
class IndexLocation:
    """The S3 client, bucket and index prefix an index is published under."""

    client: S3Client
    bucket: str
    prefix: str

    # ---- published -------------------------------------------------------------------------

    @property
    def pointer_key(self) -> str:
        return self.prefix + POINTER_FILE

    @property
    def builds_prefix(self) -> str:
        return f"{self.prefix}builds/"

    def build_folder(self, build_id: str) -> str:
        return f"{self.builds_prefix}{build_id}/"

    def pointer_for(self, build_id: str) -> Pointer:
        """The pointer naming the files of build ``build_id``."""
        folder = self.build_folder(build_id)
        return Pointer(
            build_id=build_id,
            index_key=folder + INDEX_FILE,
            metadata_key=folder + METADATA_FILE,
            embeddings_key=folder + EMBEDDINGS_FILE,
        )

    def duplicates_key(self, build_id: str) -> str:
        return self.build_folder(build_id) + DUPLICATES_FILE

    # ---- segments: adds and deletes published between builds ----------------------------------

    @property
    def segments_prefix(self) -> str:
        return f"{self.prefix}segments/"

    def segment_folder(self, segment_id: str) -> str:
        if not is_segment_id(segment_id):
            raise IndexMismatchError(f"refusing segment id {segment_id!r}: not a segment id")
        return f"{self.segments_prefix}{segment_id}/"

    def segment_key(self, segment_id: str) -> str:
        """``segment.json``: written after the vectors, before the pointer names it."""
        return self.segment_folder(segment_id) + SEGMENT_FILE

    def segment_vectors_key(self, segment_id: str) -> str:
        return self.segment_folder(segment_id) + SEGMENT_VECTORS_FILE

    # ---- a build in progress -----------------------------------------------------------------

    @property
    def lease_key(self) -> str:
        return f"{self.prefix}work/build-lease.json"

    @property
    def checkpoint_key(self) -> str:
        """Where earlier versions saved an unfinished build's vectors (shards replace it)."""
        return f"{self.prefix}work/checkpoint.npz"

    @property
    def work_prefix(self) -> str:
        return f"{self.prefix}work/build/"

    def plan_folder(self, plan_id: str) -> str:
        return f"{self.work_prefix}plans/{plan_id}/"

    def plan_key(self, plan_id: str) -> str:
        return self.plan_folder(plan_id) + "plan.json"

    def items_key(self, plan_id: str) -> str:
        """The plan's shard list as a JSON array (Step Functions' Distributed Map reads it)."""
        return self.plan_folder(plan_id) + "shards.json"

    @property
    def map_results_prefix(self) -> str:
        """Where Step Functions' ResultWriter puts the Map's output (template.yaml)."""
        return f"{self.work_prefix}map-results/"

    def shard_folder(self, shard_id: str) -> str:
        return f"{self.work_prefix}shards/{shard_id}/"

    def shard_input_key(self, shard_id: str) -> str:
        return self.shard_folder(shard_id) + "input.json"

    def shard_result_key(self, shard_id: str) -> str:
        """Written once (If-None-Match: *) and last: the shard is done."""
        return self.shard_folder(shard_id) + "result.json"
