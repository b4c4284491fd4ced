"""Buckets for tests: objects put as-is, and buckets holding a published index."""

from __future__ import annotations

import uuid
from pathlib import Path

from image_search.storage import s3


def put(client: s3.S3Client, bucket: str, key: str, data: bytes) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=data)


def published_bucket(
    layout: dict[str, bytes], *, model: Path, cache: Path, **settings: object
) -> str:
    """A new bucket holding ``layout`` (key → bytes) and an index built by the real build with
    ``settings`` (names of ``Settings`` fields)."""
    from image_search.build.pipeline import run_build
    from image_search.config import Settings
    from image_search.model.torch_clip import ClipEmbedder

    client = s3.make_client()
    name = f"indexed-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    for key, data in layout.items():
        put(client, name, key, data)
    embedder = ClipEmbedder(source=str(model), cache_dir=cache)
    options = Settings(bucket=name, model=str(model), download_workers=4, **settings)  # type: ignore[arg-type]
    assert run_build(options, client=client, embedder=embedder).published
    return name
