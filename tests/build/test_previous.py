"""The build current.json names, as the next build reads it: usable, absent, or damaged (reported
once, and the next build starts from scratch with only the pointer's ETag kept)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from image_search.artefacts.loader import read_pointer
from image_search.build.previous import read_previous
from image_search.storage import s3
from tests.support.embedders import CountingEmbedder
from tests.support.stages import build_here, pictures


def test_no_pointer_is_no_previous_build(where) -> None:
    previous = read_previous(where)
    assert (previous.pointer_etag, previous.pointer, previous.metadata) == (None, None, None)
    assert len(previous.vectors) == 0


def test_a_published_build_is_read_with_its_pointer_etag_and_vectors(where, options, put) -> None:
    put(pictures(5))
    report = build_here(where, options, CountingEmbedder())

    previous = read_previous(where)

    assert previous.pointer == read_pointer(where)
    etag = where.client.head_object(Bucket=where.bucket, Key=where.pointer_key)["ETag"]
    assert previous.pointer_etag == etag
    assert previous.metadata is not None and previous.metadata.build_id == report.build_id
    assert [item.key for item in previous.metadata.items] == sorted(pictures(5))
    assert previous.vectors.shape == (5, CountingEmbedder.dim)
    assert previous.vectors.dtype == np.float32


def damage_pointer(where) -> None:  # type: ignore[no-untyped-def]
    where.client.put_object(Bucket=where.bucket, Key=where.pointer_key, Body=b"{not json")


def delete_index(where) -> None:  # type: ignore[no-untyped-def]
    pointer = read_pointer(where)
    s3.delete_keys(where.client, bucket=where.bucket, keys=[pointer.index_key])


def corrupt_index(where) -> None:  # type: ignore[no-untyped-def]
    pointer = read_pointer(where)
    where.client.put_object(Bucket=where.bucket, Key=pointer.index_key, Body=b"not faiss")


def index_of_other_size(where) -> None:  # type: ignore[no-untyped-def]
    from image_search.index import faiss_index

    pointer = read_pointer(where)
    other = faiss_index.build(np.eye(CountingEmbedder.dim, dtype=np.float32)[:3], index_type="flat")
    body = other.serialised().tobytes()
    where.client.put_object(Bucket=where.bucket, Key=pointer.index_key, Body=body)


@pytest.mark.parametrize(
    "damage", [damage_pointer, delete_index, corrupt_index, index_of_other_size]
)
def test_a_damaged_build_is_reported_once_and_not_reused(
    where, options, put, caplog, damage
) -> None:
    put(pictures(5))
    build_here(where, options, CountingEmbedder())
    damage(where)
    etag = where.client.head_object(Bucket=where.bucket, Key=where.pointer_key)["ETag"]

    with caplog.at_level(logging.WARNING, logger="image_search.build.previous"):
        previous = read_previous(where)

    assert previous.pointer_etag == etag  # the publish stays conditional on what it found
    assert (previous.pointer, previous.metadata, len(previous.vectors)) == (None, None, 0)
    warnings = [r for r in caplog.records if r.name == "image_search.build.previous"]
    assert len(warnings) == 1 and "building everything from scratch" in warnings[0].getMessage()
