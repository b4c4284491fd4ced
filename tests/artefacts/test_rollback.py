"""``python -m image_search rollback [BUILD_ID]`` on moto: the pointer goes back to a kept build
only when that build loads, no build holds the lease, and the pointer did not change meanwhile."""

from __future__ import annotations

import time

import numpy as np
import pytest

from image_search import cli
from image_search.artefacts import rollback as rollback_module
from image_search.artefacts.loader import load_build, read_pointer
from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.artefacts.publish import publish
from image_search.artefacts.rollback import RollbackError, rollback
from image_search.errors import BuildRunningError, PublishConflictError
from image_search.index import faiss_index
from image_search.storage import lease, s3
from tests.support.factories import metadata_for


def publish_builds(where: IndexLocation, count: int) -> list[str]:
    """``count`` builds published one after the other, the n-th holding n + 1 images."""
    built = []
    rng = np.random.default_rng(0)
    for n in range(count):
        keys = [f"f{row % 2}/{row:03d}.jpg" for row in range(n + 1)]
        metadata = metadata_for(sorted(keys), sorted_by="key")
        metadata = metadata.model_copy(update={"build_id": new_build_id(), "count": n + 1})
        vectors = rng.standard_normal((n + 1, 4)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        found = s3.get_tagged(where.client, bucket=where.bucket, key=where.pointer_key)
        publish(
            where,
            metadata=metadata,
            index=faiss_index.build(vectors, index_type="flat"),
            vectors=vectors,
            keep_builds=5,
            pointer_etag=None if found is None else found[1],
        )
        built.append(metadata.build_id)
        time.sleep(0.001)  # build ids sort by the microsecond they were made
    return built


@pytest.fixture
def where(client: s3.S3Client, bucket: str) -> IndexLocation:
    return IndexLocation(client, bucket, "index/")


def named(where: IndexLocation) -> str:
    pointer = read_pointer(where)
    assert pointer is not None
    return pointer.build_id


def test_the_default_is_the_previous_build_and_it_serves(where: IndexLocation, tmp_path) -> None:
    first, second, third = publish_builds(where, 3)
    done = rollback(where, prune_grace_seconds=600)
    assert (done.before, done.after, done.count) == (third, second, 2)
    assert done.line() == f"current.json now names build {second} (2 images), was {third}"
    pointer = read_pointer(where)
    assert pointer is not None and pointer.catalog_key is not None
    # Servers still on the third build until their next refresh: pruning spares it a while.
    assert pointer.superseded is not None and list(pointer.superseded) == [third]
    assert pointer == where.pointer_for(second).model_copy(
        update={"catalog_key": pointer.catalog_key, "superseded": pointer.superseded}
    )
    loaded = load_build(where, pointer=pointer, cache_dir=tmp_path)
    assert list(loaded.metadata.keys) == ["f0/000.jpg", "f1/001.jpg"]
    assert rollback(where).after == first  # and again, one further back
    with pytest.raises(RollbackError, match="no build before"):
        rollback(where)


def test_a_named_build_and_what_is_refused(where: IndexLocation) -> None:
    first, _, third = publish_builds(where, 3)
    assert rollback(where, build_id=first).after == first
    assert rollback(where, build_id=third).after == third  # forward again, once rolled back
    with pytest.raises(RollbackError, match="already the one"):
        rollback(where, build_id=third)
    with pytest.raises(RollbackError, match="is not a build id"):
        rollback(where, build_id="../../etc")
    with pytest.raises(RollbackError, match="is not kept"):
        rollback(where, build_id="20200101T000000000000Z-abcdef")
    assert named(where) == third


def test_a_build_whose_files_do_not_load_is_not_pointed_at(where: IndexLocation) -> None:
    _, second, third = publish_builds(where, 3)
    keys_key = f"index/builds/{second}/keys.bin"
    whole = s3.get_bytes(where.client, bucket=where.bucket, key=keys_key)
    s3.put_bytes(where.client, bucket=where.bucket, key=keys_key, data=whole[:-2], content_type="x")
    with pytest.raises(RollbackError, match="keys.bin does not match its checksum"):
        rollback(where)
    where.client.delete_object(Bucket=where.bucket, Key=f"index/builds/{second}/catalog.json")
    where.client.delete_object(
        Bucket=where.bucket, Key=f"index/builds/{second}/image_metadata.json"
    )
    with pytest.raises(RollbackError, match="does not load"):
        rollback(where)
    assert named(where) == third


def test_a_running_build_holds_it_off(where: IndexLocation) -> None:
    _, third = publish_builds(where, 2)
    held = lease.acquire(where.client, bucket=where.bucket, key=where.lease_key, seconds=60)
    with pytest.raises(BuildRunningError, match="another build is running"):
        rollback(where)
    assert named(where) == third
    held.release()
    assert rollback(where).before == third


def test_a_publish_during_the_rollback_wins(where: IndexLocation, monkeypatch) -> None:
    _, second = publish_builds(where, 2)
    real = rollback_module.load_build

    def load_while_a_build_publishes(*args, **kwargs):  # type: ignore[no-untyped-def]
        loaded = real(*args, **kwargs)
        pointer = where.pointer_for(second).model_copy(update={"index_key": "moved"})
        s3.put_bytes(
            where.client,
            bucket=where.bucket,
            key=where.pointer_key,
            data=pointer.model_dump_json().encode(),
            content_type="application/json",
        )
        return loaded

    monkeypatch.setattr(rollback_module, "load_build", load_while_a_build_publishes)
    with pytest.raises(PublishConflictError, match="changed while rolling back"):
        rollback(where)
    pointer = read_pointer(where)
    assert pointer is not None and pointer.index_key == "moved"


def test_the_command_says_what_it_did_in_one_line(where: IndexLocation, capsys) -> None:
    first, second = publish_builds(where, 2)
    assert cli.main(["rollback"]) == 0
    out, _ = capsys.readouterr()
    assert out == f"current.json now names build {first} (1 images), was {second}\n"
    assert cli.main(["rollback", "not-an-id"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: 'not-an-id' is not a build id")
    assert named(where) == first
