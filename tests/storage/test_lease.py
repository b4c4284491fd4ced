"""The build lease: taken once, renewed, given back by its owner only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from image_search.errors import BuildRunningError
from image_search.storage import lease, s3

KEY = "index/work/build-lease.json"


def stored_owner(client: s3.S3Client, bucket: str) -> str | None:
    found = s3.get_tagged(client, bucket=bucket, key=KEY)
    return None if found is None else lease.LeaseRecord.model_validate_json(found[0]).owner


def store(client: s3.S3Client, bucket: str, record: lease.LeaseRecord, *, etag: str) -> bool:
    """Write ``record`` as the lease, as another request would (If-Match on ``etag``)."""
    data = record.model_dump_json().encode()
    return (
        s3.put_if(
            client, bucket=bucket, key=KEY, data=data, content_type="application/json", etag=etag
        )
        is not None
    )


def test_a_renewal_whose_answer_was_lost_keeps_the_lease(client, bucket) -> None:
    """S3 stored a renewal but its answer was lost; botocore's retry of the conditional PUT then
    gets 412 against our own new ETag. That is not another builder taking the lease over."""
    held = lease.acquire(client, bucket=bucket, key=KEY, seconds=600)
    later = held.record.expires_at + timedelta(minutes=1)
    stored = held.record.model_copy(update={"expires_at": later})  # new bytes: a new ETag
    assert store(client, bucket, stored, etag=held.etag)  # stored; its answer never came
    assert held.renew() is True and not held.lost
    with pytest.raises(BuildRunningError):
        lease.acquire(client, bucket=bucket, key=KEY, seconds=600)
    held.release()
    assert stored_owner(client, bucket) is None


def test_a_lease_taken_over_is_lost_and_never_released_by_the_old_holder(client, bucket) -> None:
    held = lease.acquire(client, bucket=bucket, key=KEY, seconds=600)
    thief = held.record.model_copy(update={"owner": "another-build"})
    assert store(client, bucket, thief, etag=held.etag)
    assert held.renew() is False and held.lost
    held.release()
    assert stored_owner(client, bucket) == "another-build"


def test_release_is_by_owner_whatever_etag_was_saved(client, bucket) -> None:
    """A process that renewed the lease moves its ETag; another process of the same build (Step
    Functions' Abandon) still gives it back, by owner."""
    held = lease.acquire(client, bucket=bucket, key=KEY, seconds=600, owner="execution-1")
    assert held.renew()
    assert not lease.release_owned(client, bucket=bucket, key=KEY, owner="execution-2")
    assert stored_owner(client, bucket) == "execution-1"
    assert lease.release_owned(client, bucket=bucket, key=KEY, owner="execution-1")
    assert stored_owner(client, bucket) is None
    assert lease.release_owned(client, bucket=bucket, key=KEY, owner="execution-1")  # gone: ok


def test_a_lease_in_a_newer_format_stops_an_older_builder_instead_of_being_taken_over(
    client, bucket
) -> None:
    """Without a version, a lease this code cannot parse reads as unreadable, which a builder
    takes over as if expired: a newer version's running build would lose its lease."""
    newer = {"schema_version": 2, "holder": {"owner": "a-newer-build"}, "until": "tomorrow"}
    client.put_object(Bucket=bucket, Key=KEY, Body=json.dumps(newer).encode())
    with pytest.raises(BuildRunningError, match="has schema_version 2; this code reads up to 1"):
        lease.acquire(client, bucket=bucket, key=KEY, seconds=600)
    stored = json.loads(s3.get_bytes(client, bucket=bucket, key=KEY))
    assert stored == newer


def test_a_lease_written_before_versions_still_reads() -> None:
    written = json.loads(
        lease.LeaseRecord(
            owner="o", host="h", pid=1, acquired_at=datetime.now(UTC), expires_at=datetime.now(UTC)
        ).model_dump_json()
    )
    assert written.pop("schema_version") == 1
    assert lease.LeaseRecord.model_validate(written).owner == "o"
