"""Builds and ingest together (issue 25): a build folds the pointer's segments in without
embedding them again, carries over the segments published while it ran, and ends where a build
from scratch would; segments it no longer needs are pruned, nothing else."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from image_search.artefacts.loader import (
    load_vectors,
    read_pointer,
    read_tagged_pointer,
    write_pointer,
)
from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.artefacts.manifest import Pointer
from image_search.build.options import BuildOptions
from image_search.build.pipeline import run_stages
from image_search.build.plan_stage import PlannedBuild
from image_search.build.shard_stage import embed_shard
from image_search.errors import PublishConflictError
from image_search.ingest.view import ViewCache
from image_search.storage import s3
from tests.ingest.conftest import Indexed
from tests.support.embedders import CountingEmbedder
from tests.support.factories import png_bytes


def index_of(where: IndexLocation, pointer: Pointer | None = None) -> tuple[list[str], np.ndarray]:
    pointer = pointer or read_pointer(where)
    assert pointer is not None
    metadata, vectors = load_vectors(where, pointer=pointer)
    return [item.key for item in metadata.items], vectors


def served_keys(indexed: Indexed) -> dict[str, str]:
    """key → ETag of the view the pointer describes (the build, then its segments in order)."""
    return ViewCache().view(indexed.where, indexed.pointer()).etags


def listed(indexed: Indexed) -> dict[str, str]:
    objects = s3.list_images(
        indexed.where.client, bucket=indexed.where.bucket, folders=[], exclude_prefix="index/"
    )
    return {obj.key: obj.etag for obj in objects}


def change_through_ingest(indexed: Indexed) -> None:
    indexed.put("animals/new.png", png_bytes(60))
    indexed.put("nature/new.png", png_bytes(61))
    indexed.put("animals/1.png", png_bytes(62))  # an overwrite
    indexed.delete("animals/2.png")
    indexed.ingest()


def test_a_build_folds_segments_in_and_equals_a_build_from_scratch(indexed: Indexed) -> None:
    change_through_ingest(indexed)
    indexed.put("animals/late.png", png_bytes(63))
    indexed.ingest()
    assert len(indexed.pointer().segments or []) == 2
    embedded = indexed.embedder.images

    report = indexed.build()
    assert report.published and report.embedded == 0
    assert indexed.embedder.images == embedded  # every vector came from the segments
    compacted = indexed.pointer()
    assert compacted.segments is None
    keys, vectors = index_of(indexed.where)
    assert keys == sorted(listed(indexed))

    scratch = indexed.build(full=True)
    assert scratch.published and scratch.embedded == len(keys)
    again_keys, again = index_of(indexed.where)
    assert again_keys == keys
    np.testing.assert_allclose(vectors, again, atol=1e-5)


def test_a_build_that_lost_only_to_segments_carries_them_over(indexed: Indexed) -> None:
    """Ingest publishes while the build embeds: nothing is lost, nothing counted twice."""
    indexed.put("animals/before.png", png_bytes(64))  # listed by the build and evented
    where, options = indexed.where, BuildOptions.of(indexed.settings)

    def embed_while_ingest_publishes(planned: PlannedBuild) -> None:
        for shard in planned.shards:
            embed_shard(
                where, options, shard, plan_id=planned.plan.plan_id, embedder=indexed.embedder
            )
        indexed.put("animals/during.png", png_bytes(65))  # after the listing
        indexed.delete("nature/0.png")
        indexed.ingest()

    report = run_stages(
        where,
        options,
        model=indexed.embedder.identity,
        full=False,
        dry_run=False,
        embed=embed_while_ingest_publishes,
    )
    assert report.published
    pointer = indexed.pointer()
    assert pointer.build_id == report.build_id and len(pointer.segments or []) == 1
    keys, _ = index_of(where)
    assert "animals/before.png" in keys and "nature/0.png" in keys  # as listed
    assert served_keys(indexed) == listed(indexed)  # the segment brings it up to date
    assert "animals/during.png" in served_keys(indexed)

    indexed.build()  # the next build folds the carried segment in
    keys, _ = index_of(where)
    assert keys == sorted(listed(indexed)) and indexed.pointer().segments is None


class BuildDuringEmbedding(CountingEmbedder):
    """An embedder that lets a whole build publish while ingest is embedding its batch."""

    def __init__(self, indexed: Indexed) -> None:
        super().__init__()
        self.indexed, self.built = indexed, False

    def embed_images(self, images: Any) -> Any:
        if not self.built:
            self.built = True
            assert self.indexed.build().published
        return super().embed_images(images)


def test_ingest_that_lost_to_a_build_looks_again(indexed: Indexed) -> None:
    indexed.put("animals/a.png", png_bytes(66))
    indexed.put("animals/b.png", png_bytes(67))
    embedder = BuildDuringEmbedding(indexed)
    before = indexed.pointer().build_id
    report = indexed.ingest(embedder=embedder)
    pointer = indexed.pointer()
    assert pointer.build_id != before  # the build published between ingest's read and write
    # The build listed both images; ingest, made again against it, finds nothing left to do.
    assert pointer.segments is None and report.failed == set()
    assert served_keys(indexed) == listed(indexed)


def test_a_build_conflicts_when_another_build_published(indexed: Indexed) -> None:
    where, options = indexed.where, BuildOptions.of(indexed.settings)
    indexed.put("animals/y.png", png_bytes(69))

    def another_build_meanwhile(planned: PlannedBuild) -> None:
        for shard in planned.shards:
            embed_shard(
                where, options, shard, plan_id=planned.plan.plan_id, embedder=indexed.embedder
            )
        tagged = read_tagged_pointer(where)
        assert tagged is not None
        other = tagged[0].model_copy(update={"build_id": new_build_id()})
        assert write_pointer(where, other, etag=tagged[1])

    with pytest.raises(PublishConflictError):
        run_stages(
            where,
            options,
            model=indexed.embedder.identity,
            full=False,
            dry_run=False,
            embed=another_build_meanwhile,
        )


def test_pruning_deletes_old_unnamed_segments_only(
    indexed: Indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    change_through_ingest(indexed)
    (named,) = indexed.pointer().segments or []
    where = indexed.where
    old, young = "20200101T000000000000Z-0a0a0a", "29990101T000000000000Z-0b0b0b"
    for folder in (old, young, "not-a-segment"):
        where.client.put_object(
            Bucket=where.bucket, Key=f"index/segments/{folder}/vectors.npy", Body=b"x"
        )
    indexed.build()
    left = {
        obj["Key"].split("/")[2]
        for obj in s3.list_objects(where.client, bucket=where.bucket, prefix="index/segments/")
    }
    # folded into the build but younger than an hour: an ingest may be between files and pointer
    assert left == {named.segment_id, young, "not-a-segment"}
