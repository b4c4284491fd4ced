"""Pruning spares builds replaced less than IMAGE_SEARCH_PRUNE_GRACE_SECONDS ago: the pointer
records when each was superseded (issue 21, item 9)."""

from __future__ import annotations

import json

import pytest

from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.artefacts.manifest import Item, Metadata, Pointer, folder_ranges
from image_search.artefacts.publish import publish
from image_search.index import faiss_index
from image_search.storage import s3
from tests.support.vectors import clustered


def publish_one(where: IndexLocation, *, grace: float) -> Pointer:
    items = [Item(key=f"a/{i}.jpg", folder="a", etag="e", size=1) for i in range(4)]
    vectors = clustered(4, dim=8)
    metadata = Metadata(
        build_id=new_build_id(),
        model="m",
        dim=8,
        index_type="flat",
        count=4,
        bucket=where.bucket,
        folders=folder_ranges(items),
        items=items,
        sorted_by="key",
    )
    found = s3.get_tagged(where.client, bucket=where.bucket, key=where.pointer_key)
    return publish(
        where,
        metadata=metadata,
        index=faiss_index.build(vectors, index_type="flat"),
        vectors=vectors,
        keep_builds=1,
        pointer_etag=found[1] if found else None,
        prune_grace_seconds=grace,
    )


def builds(where: IndexLocation) -> set[str]:
    prefix = where.builds_prefix
    listed = s3.list_objects(where.client, bucket=where.bucket, prefix=prefix)
    return {obj["Key"][len(prefix) :].partition("/")[0] for obj in listed}


@pytest.mark.parametrize("grace", [600.0, 0.0])
def test_builds_replaced_within_the_grace_period_survive_a_prune(client, bucket, grace) -> None:
    where = IndexLocation(client, bucket, "index/")
    published = [publish_one(where, grace=grace) for _ in range(3)]  # KEEP_BUILDS=1
    ids = [pointer.build_id for pointer in published]
    current = json.loads(s3.get_bytes(client, bucket=bucket, key=where.pointer_key))
    if grace:
        assert builds(where) == set(ids)  # a server may still be reading the first two
        assert set(current["superseded"]) == set(ids[:2])
    else:
        assert builds(where) == {ids[-1]}  # as before the grace period existed
        assert "superseded" not in current  # and the pointer reads as it did
