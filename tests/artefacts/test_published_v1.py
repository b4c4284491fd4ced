"""Builds published by the code before the house move (tests/data/published-v1/) load, search
and republish byte for byte: moving the code did not change the published format. The fields
added since (catalog.json's checksums, current.json's schema_version) are the only
differences, each named below."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts.loader import load_build, read_pointer
from image_search.artefacts.location import IndexLocation, beside
from image_search.artefacts.manifest import Metadata
from image_search.artefacts.publish import publish
from image_search.index import faiss_index
from image_search.storage import checksum, s3
from tests.support.paths import ROOT

FIXTURES = ROOT / "tests" / "data" / "published-v1"


def upload(client: s3.S3Client, folder: Path) -> str:
    """A new bucket holding every file under ``folder`` at its relative path."""
    bucket = f"v1-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = path.relative_to(folder).as_posix()
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    return bucket


def objects(client: s3.S3Client, bucket: str, prefix: str) -> dict[str, bytes]:
    return {
        obj["Key"]: s3.get_bytes(client, bucket=bucket, key=obj["Key"])
        for obj in s3.list_objects(client, bucket=bucket, prefix=prefix)
    }


@pytest.fixture
def flat(client: s3.S3Client) -> IndexLocation:
    return IndexLocation(client, upload(client, FIXTURES), "flat/")


@pytest.fixture
def pq(client: s3.S3Client, tmp_path: Path) -> IndexLocation:
    with tarfile.open(FIXTURES / "pq.tar.xz") as archive:
        archive.extractall(tmp_path / "pq-build", filter="data")
    return IndexLocation(client, upload(client, tmp_path / "pq-build"), "pq/")


def test_a_flat_build_from_before_the_move_loads_and_answers_exactly(flat, tmp_path) -> None:
    pointer = read_pointer(flat)
    assert pointer is not None and pointer.build_id == "20261130T120000000000Z-aaaaaa"
    loaded = load_build(flat, pointer=pointer, cache_dir=tmp_path)
    assert pointer.embeddings_key is not None
    stored = np.load(
        io.BytesIO(s3.get_bytes(flat.client, bucket=flat.bucket, key=pointer.embeddings_key))
    )
    metadata = Metadata.model_validate_json(
        s3.get_bytes(flat.client, bucket=flat.bucket, key=pointer.metadata_key)
    )
    assert list(loaded.metadata.keys) == [item.key for item in metadata.items]
    assert loaded.index.kind == "flat" and loaded.index.ntotal == len(stored) == 18
    for row in range(len(stored)):
        hits = loaded.index.search(stored[row], k=5)
        expected = np.argsort(-(stored @ stored[row]), kind="stable")[:5]
        assert hits.ids == [int(i) for i in expected]
    nature = loaded.metadata.key_order().ranges("nature/")
    hits = loaded.index.search(stored[0], k=10, allowed=nature)
    assert {loaded.metadata.key(row) for row in hits.ids} == {
        "nature/été/lac.png",
        "nature/ünïcode ✓.webp",
        "nature/tree 1.jpg",
    }


def test_today_s_publish_of_the_same_build_is_byte_for_byte_the_same(flat, client) -> None:
    pointer = read_pointer(flat)
    assert pointer is not None and pointer.embeddings_key is not None
    metadata = Metadata.model_validate_json(
        s3.get_bytes(client, bucket=flat.bucket, key=pointer.metadata_key)
    )
    vectors = np.load(
        io.BytesIO(s3.get_bytes(client, bucket=flat.bucket, key=pointer.embeddings_key))
    )
    again = IndexLocation(client, f"again-{uuid.uuid4().hex[:12]}", "flat/")
    client.create_bucket(Bucket=again.bucket)
    publish(
        again,
        metadata=metadata,
        index=faiss_index.build(vectors, index_type="flat"),
        vectors=vectors,
        keep_builds=3,
        pointer_etag=None,
    )
    before = objects(client, flat.bucket, "flat/")
    after = objects(client, again.bucket, "flat/")
    # The pointer, the metadata, the vectors, the FAISS file and the four catalog files.
    assert len(before) == 8 and after.keys() == before.keys()
    # Changed on purpose (issue 21): catalog.json ends with one more field, the checksums of
    # the three binary files. The bytes before it are the same, and readers ignore a field they
    # do not know, so the old code reads the new file as it read the old one.
    catalog = next(key for key in before if key.endswith("/catalog.json"))
    old, new = before.pop(catalog), after.pop(catalog)
    assert new.startswith(old[:-1] + b',"checksums":{')
    assert json.loads(new)["checksums"] == {
        name: checksum.of_bytes(before[beside(catalog, name)])
        for name in ("keys.bin", "key_offsets.npy", "key_order.npy")
    }
    # And current.json starts with its format version (artefacts/versions.py), which old
    # readers ignore and new ones take as 1 when it is absent, as it is in the old file.
    old, new = before.pop("flat/current.json"), after.pop("flat/current.json")
    assert new == b'{"schema_version":1,' + old[1:]
    assert after == before


def test_an_ivf_pq_build_from_before_the_move_loads_and_re_ranks(pq, tmp_path) -> None:
    pointer = read_pointer(pq)
    assert pointer is not None and pointer.rerank_key is not None
    loaded = load_build(pq, pointer=pointer, cache_dir=tmp_path)
    index = loaded.index
    assert index.kind == "ivf-pq" and index.ntotal == 20_000 and index.dim == 8
    assert loaded.metadata.key(0) == "f0/00000" and loaded.metadata.row("f3/00010") is not None
    for row in (0, 4_321, 19_999):
        vector = index.vector(row)[0]
        assert index.search(vector, k=5).ids[0] == row
    folder = loaded.metadata.key_order().ranges("f3/")
    hits = index.search(index.vector(5)[0], k=20, allowed=folder)
    assert len(hits.ids) == 20
    assert all(loaded.metadata.key(row).startswith("f3/") for row in hits.ids)
