"""Segments published on a bucket's current build through the product's ``publish_segment``, and
buckets copied so a test can change one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from image_search.artefacts.loader import read_pointer
from image_search.artefacts.location import IndexLocation, new_segment_id
from image_search.artefacts.manifest import CatalogHeader, Item, ItemPhoto, Pointer
from image_search.artefacts.segment_publish import publish_segment
from image_search.artefacts.segments import Segment
from image_search.model.vectors import normalise
from image_search.storage import s3


def where(bucket: str) -> IndexLocation:
    return IndexLocation(s3.make_client(), bucket, "index/")


def header(bucket: str) -> CatalogHeader:
    """The current build's ``catalog.json``: its model and width."""
    pointer = read_pointer(where(bucket))
    assert pointer is not None and pointer.catalog_key is not None
    data = s3.get_bytes(s3.make_client(), bucket=bucket, key=pointer.catalog_key)
    return CatalogHeader.model_validate_json(data)


def add_segment(
    bucket: str,
    *,
    adds: Mapping[str, np.ndarray] | None = None,
    deletes: Sequence[str] = (),
    photos: Callable[[str], ItemPhoto | None] | None = None,
) -> Pointer:
    """Publish a segment adding ``adds`` (key → vector, normalised here) and deleting
    ``deletes`` on the current build, as ingest would; the pointer written. ``photos`` gives an
    added key's photo fields."""
    adds = adds or {}
    built = header(bucket)
    pointer = read_pointer(where(bucket))
    assert pointer is not None
    items = [
        Item(
            key=key,
            folder=s3.folder_of(key),
            etag=uuid.uuid4().hex,
            size=1,
            photo=None if photos is None else photos(key),
        )
        for key in adds
    ]
    vectors = (
        normalise(np.vstack([np.ravel(v) for v in adds.values()]))
        if adds
        else np.zeros((0, built.dim), dtype=np.float32)
    )
    segment = Segment(
        segment_id=new_segment_id(),
        base_build_id=pointer.build_id,
        model=built.model,
        dim=built.dim,
        items=items,
        deletes=list(deletes),
    )
    return publish_segment(where(bucket), segment, vectors)


def copy_bucket(source: str, *, prefix: str = "") -> str:
    """A new bucket holding ``source``'s objects under ``prefix`` (all by default)."""
    client = s3.make_client()
    bucket = f"copy-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    for obj in s3.list_objects(client, bucket=source, prefix=prefix):
        client.copy_object(
            Bucket=bucket, Key=obj["Key"], CopySource={"Bucket": source, "Key": obj["Key"]}
        )
    return bucket
