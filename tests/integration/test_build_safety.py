"""Builds that cannot hurt the bucket or each other: the index prefix, pruning, the build lease
and the conditional pointer. moto S3 over HTTP enforces If-Match / If-None-Match like S3."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from image_search.artefacts.catalog import FILES as CATALOG_FILES
from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation, beside, new_build_id
from image_search.artefacts.prune import prune
from image_search.artefacts.publish import publish
from image_search.build.pipeline import run_build
from image_search.config import Settings, get_settings
from image_search.errors import BuildRunningError, ConfigError, PublishConflictError
from image_search.index import faiss_index
from image_search.messages import settings_problem
from image_search.storage import lease, s3
from image_search.storage.lease import LeaseRecord
from tests.integration.test_build import build, builds_in_a_row, populate
from tests.support.buckets import put
from tests.support.factories import encode, random_image

LEASE = "index/work/build-lease.json"


def images(count: int, *, start: int = 0) -> dict[str, bytes]:
    return {f"animals/a{i:02d}.png": encode(random_image(i)) for i in range(start, start + count)}


def keys_under(client: s3.S3Client, bucket: str, prefix: str) -> set[str]:
    return {obj["Key"] for obj in s3.list_objects(client, bucket=bucket, prefix=prefix)}


def pointer_id(client: s3.S3Client, bucket: str) -> str:
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    return pointer.build_id


class Interleaved:
    """The real embedder; before its first batch, ``meanwhile`` runs: another builder's move
    while this build is half-way."""

    def __init__(self, embedder, meanwhile: Callable[[], None]) -> None:  # type: ignore[no-untyped-def]
        self._embedder, self._meanwhile = embedder, meanwhile
        self.source, self.batch_size = embedder.source, embedder.batch_size
        self.identity = embedder.identity
        self.ran = False

    def embed_images(self, pictures: Sequence[object]):  # type: ignore[no-untyped-def]
        if not self.ran:
            self.ran = True
            self._meanwhile()
        return self._embedder.embed_images(pictures)


# ---- the index prefix -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "folders", "reason"),
    [
        ("", "", "must name a folder for the index"),
        ("/", "", "must name a folder for the index"),
        (
            "animals/index/",
            "animals,nature",
            "'animals/index/' overlaps the indexed folder 'animals'",
        ),
        ("index", "index", "'index/' overlaps the indexed folder 'index'"),
        ("animals", "animals/deep", "'animals/' overlaps the indexed folder 'animals/deep'"),
    ],
    ids=["empty", "slash", "inside-a-folder", "same-as-a-folder", "around-a-folder"],
)
def test_an_index_prefix_among_the_images_is_refused(prefix, folders, reason, monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_SEARCH_INDEX_PREFIX", prefix)
    monkeypatch.setenv("IMAGE_SEARCH_FOLDERS", folders)
    with pytest.raises(ValidationError) as refused:
        Settings(bucket="my-images")
    line = settings_problem(refused.value)
    assert line.startswith(f"invalid IMAGE_SEARCH_INDEX_PREFIX: {reason}") and "\n" not in line
    # A prefix beside the folders is fine.
    assert Settings(bucket="my-images", index_prefix="search-index").index_prefix == "search-index/"


def test_the_cli_refuses_an_empty_prefix_with_one_line(bucket, monkeypatch, capsys) -> None:
    from image_search.cli import main

    monkeypatch.setenv("IMAGE_SEARCH_INDEX_PREFIX", "")
    assert main(["build"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: invalid IMAGE_SEARCH_INDEX_PREFIX: must name a folder")


def test_the_lambda_build_refuses_an_empty_prefix_with_one_line(bucket, monkeypatch) -> None:
    from image_search.build.step_functions import plan_handler

    monkeypatch.setenv("IMAGE_SEARCH_INDEX_PREFIX", "/")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="^invalid IMAGE_SEARCH_INDEX_PREFIX: must name") as bad:
        plan_handler({}, None)
    assert "\n" not in str(bad.value)


# ---- pruning --------------------------------------------------------------------------------


def test_pruning_deletes_only_build_folders_it_wrote(client, bucket, embedder, monkeypatch) -> None:
    mine = {
        "index/builds/2019/holiday.jpg": encode(random_image(90), "JPEG"),
        "index/builds/notes.txt": b"my notes",
        "index/builds/copy-of-20240101T000000000000Z-abcdef/x.bin": b"a copy I made",
        "index/builds/20240101T000000000000Z-abcdef.bak/x.bin": b"another",
    }
    populate(client, bucket, mine)
    monkeypatch.setenv("IMAGE_SEARCH_KEEP_BUILDS", "1")
    monkeypatch.setenv("IMAGE_SEARCH_PRUNE_GRACE_SECONDS", "0")  # prune at once
    get_settings.cache_clear()
    ids = builds_in_a_row(client, bucket, embedder, 3)
    left = keys_under(client, bucket, "index/builds/")
    assert set(mine) <= left
    assert {key.split("/")[2] for key in left - set(mine)} == {ids[-1]}


def test_pruning_spares_the_current_build_and_newer_ones(client, bucket) -> None:
    ids = [f"2024010{day}T000000000000Z-abcdef" for day in range(1, 6)]
    for build_id in ids:
        put(client, bucket, f"index/builds/{build_id}/image_metadata.json", b"{}")
    prune(IndexLocation(client, bucket, "index/"), keep=2, current=ids[2])
    left = {key.split("/")[2] for key in keys_under(client, bucket, "index/builds/")}
    # The current build and the one before it; the two newer ones (another builder's) stay.
    assert left == {ids[1], ids[2], ids[3], ids[4]}


# ---- one builder at a time ------------------------------------------------------------------


def test_a_second_builder_is_refused_while_the_first_runs(client, bucket, embedder) -> None:
    populate(client, bucket, images(3))
    refusals: list[BuildRunningError] = []

    def second_builder() -> None:
        with pytest.raises(BuildRunningError) as refused:
            run_build(get_settings(), client=s3.make_client(), embedder=embedder)
        refusals.append(refused.value)

    first = run_build(get_settings(), client=client, embedder=Interleaved(embedder, second_builder))
    assert first.published and pointer_id(client, bucket) == first.build_id
    assert len(refusals) == 1 and str(refusals[0]).startswith("another build is running: started")
    # Released at the end: the next build runs (and finds nothing to do).
    assert LEASE not in keys_under(client, bucket, "index/")
    assert not build(client, embedder).published


def test_the_cli_says_a_build_is_running_in_one_line(client, bucket, capsys) -> None:
    from image_search.cli import main

    populate(client, bucket, images(1))
    other = lease.acquire(client, bucket=bucket, key=LEASE, seconds=600)
    assert main(["build"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: another build is running: started")
    assert "Traceback" not in "\n".join(lines)
    other.release()
    assert main(["build"]) == 0


def test_a_lease_left_by_a_killed_build_expires(client, bucket, embedder, caplog) -> None:
    populate(client, bucket, images(2))
    then = datetime.now(UTC) - timedelta(minutes=10)
    killed = LeaseRecord(
        owner="killed",
        host="gone",
        pid=1,
        acquired_at=then,
        expires_at=then + timedelta(seconds=300),
    )
    put(client, bucket, LEASE, killed.model_dump_json().encode())
    with caplog.at_level(logging.WARNING, logger="image_search"):
        assert build(client, embedder).published
    assert "taking over an expired build lease" in caplog.text
    assert LEASE not in keys_under(client, bucket, "index/")


def test_a_running_build_renews_its_lease(client, bucket) -> None:
    with lease.held(client, bucket=bucket, key=LEASE, seconds=1.5) as held:
        first = held.record.expires_at
        deadline = time.monotonic() + 30
        while held.record.expires_at == first and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = LeaseRecord.model_validate_json(
            client.get_object(Bucket=bucket, Key=LEASE)["Body"].read()
        )
        assert stored.expires_at == held.record.expires_at > first
        with pytest.raises(BuildRunningError):
            lease.acquire(client, bucket=bucket, key=LEASE, seconds=1.5)
    assert LEASE not in keys_under(client, bucket, "index/")


def test_a_build_whose_lease_was_taken_over_publishes_nothing(client, bucket, embedder) -> None:
    populate(client, bucket, images(2))
    first = build(client, embedder)
    put(client, bucket, "animals/new.png", encode(random_image(50)))
    now = datetime.now(UTC)
    taker = LeaseRecord(
        owner="taker", host="elsewhere", pid=2, acquired_at=now, expires_at=now + timedelta(hours=1)
    )

    def take_over() -> None:  # what another builder does once this one's lease has lapsed
        put(client, bucket, LEASE, taker.model_dump_json().encode())

    with pytest.raises(BuildRunningError, match="took it over; nothing was published"):
        run_build(get_settings(), client=client, embedder=Interleaved(embedder, take_over))
    assert pointer_id(client, bucket) == first.build_id
    # The other builder's lease is not ours to release.
    held = LeaseRecord.model_validate_json(
        client.get_object(Bucket=bucket, Key=LEASE)["Body"].read()
    )
    assert held.owner == "taker"


def test_a_stale_pointer_is_never_replaced_nor_its_build_pruned(
    client, bucket, embedder, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGE_SEARCH_KEEP_BUILDS", "1")
    monkeypatch.setenv("IMAGE_SEARCH_PRUNE_GRACE_SECONDS", "0")  # prune at once
    get_settings.cache_clear()
    populate(client, bucket, images(3))
    build(client, embedder)
    put(client, bucket, "animals/new.png", encode(random_image(50)))
    newer: list[str] = []

    def publish_elsewhere() -> None:
        # A builder that takes no lease (an older release still on its schedule) publishes a
        # build while this one runs, so current.json is no longer the one this build read.
        pointer = read_pointer(IndexLocation(client, bucket, "index/"))
        assert pointer is not None
        metadata, vectors = load_vectors(IndexLocation(client, bucket, "index/"), pointer=pointer)
        etag = client.head_object(Bucket=bucket, Key="index/current.json")["ETag"]
        other = publish(
            IndexLocation(client, bucket, "index/"),
            metadata=metadata.model_copy(update={"build_id": new_build_id()}),
            index=faiss_index.build(vectors, index_type="flat"),
            vectors=vectors,
            keep_builds=1,
            pointer_etag=etag,
        )
        newer.append(other.build_id)

    builds_before = keys_under(client, bucket, "index/builds/")
    with pytest.raises(PublishConflictError, match="changed while this build ran"):
        run_build(get_settings(), client=client, embedder=Interleaved(embedder, publish_elsewhere))

    assert pointer_id(client, bucket) == newer[0]
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    assert pointer.catalog_key is not None
    named = {pointer.index_key, pointer.metadata_key, pointer.embeddings_key}
    named |= {beside(pointer.catalog_key, name) for name in CATALOG_FILES}
    assert pointer.photos_key is not None
    named.add(pointer.photos_key)
    left = keys_under(client, bucket, "index/builds/")
    assert named <= left  # nothing the pointer names was pruned
    assert left == named  # and the refused build removed its own files (the older one pruned)
    assert builds_before.isdisjoint(left)
    again = build(client, embedder)  # the next run sees the new pointer and publishes
    assert again.published and again.count == 4 and pointer_id(client, bucket) == again.build_id


def test_a_failed_build_releases_its_lease(client, bucket, embedder) -> None:
    from tests.integration.test_build import FailingPuts

    populate(client, bucket, images(2))
    with pytest.raises(ConnectionResetError):
        build(FailingPuts(client, "image_metadata.json"), embedder)
    assert LEASE not in keys_under(client, bucket, "index/")
    assert json.loads(json.dumps(build(client, embedder).summary()))["state"] == "published"
