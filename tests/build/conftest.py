"""Fixtures for the build stages' unit tests: an index location on a fresh moto bucket, small
build options, and images put there."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest

from image_search.artefacts.location import IndexLocation
from image_search.build.options import BuildOptions
from image_search.config import Settings
from image_search.storage import s3

PREFIX = "index/"
Put = Callable[[dict[str, bytes]], list[s3.S3Object]]


@pytest.fixture(scope="module")
def module_client(s3_endpoint: str) -> s3.S3Client:
    """One client of the moto server per module: making one costs 0.3 s (boto3 loads its service
    model), a third of a stage test."""
    return s3.make_client()


@pytest.fixture
def where(module_client: s3.S3Client) -> IndexLocation:
    """``index/`` in a fresh bucket (without the ``bucket`` fixture's model: nothing here loads
    torch)."""
    name = f"stage-{uuid.uuid4().hex[:12]}"
    module_client.create_bucket(Bucket=name)
    return IndexLocation(module_client, name, PREFIX)


@pytest.fixture
def options(where: IndexLocation) -> BuildOptions:
    """The defaults, with shards of 4 images and few download threads."""
    defaults = BuildOptions.of(Settings(bucket=where.bucket))
    return replace(defaults, shard_size=4, download_workers=2, index_type="auto")


@pytest.fixture
def put(where: IndexLocation) -> Put:
    """Put ``{key: bytes}`` in the bucket; return the bucket's images as the build lists them."""

    def put_and_list(objects: dict[str, bytes]) -> list[s3.S3Object]:
        for key, data in objects.items():
            where.client.put_object(Bucket=where.bucket, Key=key, Body=data)
        return s3.list_images(where.client, bucket=where.bucket, folders=[], exclude_prefix=PREFIX)

    return put_and_list
