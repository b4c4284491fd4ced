"""Builds of synthetic vectors published through ``artefacts.publish``: every index kind at the
sizes the IVF kinds need, in seconds rather than the minutes real embeddings would take."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.artefacts.manifest import Item, Metadata, Pointer, folder_ranges
from image_search.artefacts.publish import publish
from image_search.index import faiss_index
from image_search.storage import s3
from tests.support.vectors import clustered

DIM = 16  # the tiny CLIP's
# Rows per folder, in key order; the IVF kinds need IVF_MIN vectors to train.
FOLDERS = {"alpha": 60, "beta": 3000, "delta": 250, "gamma": faiss_index.IVF_MIN}


def items(folders: Mapping[str, int] = FOLDERS) -> list[Item]:
    """Keys sorted as a build sorts them; a third of each folder's images under ``sub/``."""
    listed = [
        Item(
            key=f"{folder}/{'sub/' if row % 3 == 0 else ''}img_{row:06d}.jpg",
            folder=folder,
            etag="e",
            size=1,
        )
        for folder, size in folders.items()
        for row in range(size)
    ]
    return sorted(listed, key=lambda item: item.key)


def publish_synthetic(
    kind: str, *, model: Path, folders: Mapping[str, int] = FOLDERS
) -> tuple[str, Pointer]:
    """A new bucket holding a ``kind`` build of clustered vectors, one a key of ``items``."""
    client = s3.make_client()
    bucket = f"synthetic-{kind}-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    listed = items(folders)
    vectors = clustered(len(listed), dim=DIM)
    built = faiss_index.build(vectors, index_type=kind)
    assert built.kind == kind
    metadata = Metadata(
        build_id=new_build_id(),
        model=str(model),
        dim=DIM,
        index_type=kind,
        count=len(listed),
        bucket=bucket,
        folders=folder_ranges(listed),
        items=listed,
        sorted_by="key",
    )
    pointer = publish(
        IndexLocation(client, bucket, "index/"),
        metadata=metadata,
        index=built,
        vectors=vectors,
        keep_builds=1,
        pointer_etag=None,
    )
    return bucket, pointer
