"""The S3 calls the build's photo fields rely on, on moto: the listing's LastModified, and ranged
GETs pinned to the ETag the listing gave."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from image_search.errors import ObjectChangedError
from image_search.storage import s3


@pytest.fixture
def bucket(client: s3.S3Client) -> str:
    """A fresh bucket (without the shared fixture's model: nothing here needs it)."""
    name = f"s3-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def test_the_listing_carries_each_object_s_last_modified(client, bucket) -> None:
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    client.put_object(Bucket=bucket, Key="a/1.jpg", Body=b"x")
    (obj,) = s3.list_images(client, bucket=bucket, folders=[], exclude_prefix="index/")
    assert obj.modified is not None and obj.modified.utcoffset() == timedelta(0)
    assert before <= obj.modified <= datetime.now(UTC) + timedelta(seconds=1)


def test_a_ranged_get_pinned_to_an_etag_refuses_another_version(client, bucket) -> None:
    client.put_object(Bucket=bucket, Key="a/1.jpg", Body=b"0123456789")
    (obj,) = s3.list_images(client, bucket=bucket, folders=[], exclude_prefix="index/")
    assert s3.get_range(client, bucket=bucket, key=obj.key, start=0, end=4, etag=obj.etag) == (
        b"0123",
        10,
    )
    client.put_object(Bucket=bucket, Key="a/1.jpg", Body=b"another version")
    with pytest.raises(ObjectChangedError):
        s3.get_range(client, bucket=bucket, key=obj.key, start=0, end=4, etag=obj.etag)
    assert s3.get_range(client, bucket=bucket, key=obj.key, start=0, end=4)[0] == b"anot"
