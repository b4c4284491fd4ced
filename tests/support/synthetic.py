"""Builds of synthetic vectors published through ``artefacts.publish``: every index kind at the
sizes the IVF kinds need, in seconds rather than the minutes real embeddings would take."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.artefacts.manifest import Item, ItemPhoto, Metadata, Pointer, folder_ranges
from image_search.artefacts.publish import publish
from image_search.index import faiss_index
from image_search.storage import s3
from tests.support.vectors import clustered

DIM = 16  # the tiny CLIP's
# Rows per folder, in key order; the IVF kinds need IVF_MIN vectors to train.
FOLDERS = {"alpha": 60, "beta": 3000, "delta": 250, "gamma": faiss_index.IVF_MIN}


# Two spellings of one camera: filters and facets compare names case-folded.
CAMERAS = ("Canon EOS R5", "CANON EOS R5", "NIKON D850", "Apple iPhone 13", "FUJIFILM X-T4")
SIDES = ((4000, 3000), (3000, 4000), (2048, 2048), (640, 480), (1080, 1920))
FIRST_DAY = datetime(2015, 1, 1)
DAYS = 10 * 365


def photo(key: str) -> ItemPhoto | None:
    """Photo fields of a synthetic image, the same for a key every time: dates over ten years
    (some from LastModified, some unknown), five cameras and unknown ones, five sizes (one in 20
    unknown). A filter on a known size keeps over 20,000 of ``FOLDERS``' 23,310 images."""
    pick = random.Random(key)
    if pick.random() < 0.03:
        return None  # the build could not read its fields
    modified = datetime(2025, 3, 1, tzinfo=UTC) - timedelta(seconds=pick.randrange(10**8))
    taken = FIRST_DAY + timedelta(seconds=pick.randrange(DAYS * 86400))
    source = pick.choices(["exif", "modified", None], weights=[8, 1, 1])[0]
    if source == "modified":
        taken = modified.replace(tzinfo=None)
    width, height = pick.choice(SIDES) if pick.random() < 0.95 else (None, None)
    return ItemPhoto(
        taken=None if source is None else taken,
        taken_offset="+02:00" if source == "exif" and pick.random() < 0.5 else None,
        taken_source=source,
        camera=pick.choice([*CAMERAS, None]),
        width=width,
        height=height,
        modified=modified,
    )


def items(folders: Mapping[str, int] = FOLDERS, *, photos: bool = False) -> list[Item]:
    """Keys sorted as a build sorts them; a third of each folder's images under ``sub/``; with
    ``photos``, each with the fields ``photo(key)`` gives it."""
    keys = [
        (folder, f"{folder}/{'sub/' if row % 3 == 0 else ''}img_{row:06d}.jpg")
        for folder, size in folders.items()
        for row in range(size)
    ]
    listed = [
        Item(key=key, folder=folder, etag="e", size=1, photo=photo(key) if photos else None)
        for folder, key in keys
    ]
    return sorted(listed, key=lambda item: item.key)


def publish_synthetic(
    kind: str, *, model: Path, folders: Mapping[str, int] = FOLDERS, photos: bool = True
) -> tuple[str, Pointer]:
    """A new bucket holding a ``kind`` build of clustered vectors, one a key of ``items``, with
    photo fields (``photos``) or as builds before them were."""
    client = s3.make_client()
    bucket = f"synthetic-{kind}-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    listed = items(folders, photos=photos)
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
