"""Buckets for tests: objects put as-is, and buckets holding a published index."""

from __future__ import annotations

import uuid
from pathlib import Path

from image_search.artefacts.location import IndexLocation
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


def republish_without_photos(where: IndexLocation) -> str:
    """Publish the current build again as the versions before photo fields did: no ``photo`` in
    any item, no photos.npy, no ``photos_key`` (tests/artefacts/test_published_v1.py holds that
    such a publish is byte for byte theirs). Returns the new build's id."""
    from image_search.artefacts.loader import load_vectors, read_pointer
    from image_search.artefacts.location import new_build_id
    from image_search.artefacts.publish import publish
    from image_search.index import faiss_index

    pointer = read_pointer(where)
    assert pointer is not None
    metadata, vectors = load_vectors(where, pointer=pointer)
    items = [item.model_copy(update={"photo": None}) for item in metadata.items]
    old = metadata.model_copy(update={"build_id": new_build_id(), "items": items})
    etag = where.client.head_object(Bucket=where.bucket, Key=where.pointer_key)["ETag"]
    again = publish(
        where,
        metadata=old,
        index=faiss_index.build(vectors, index_type=metadata.index_type),
        vectors=vectors,
        keep_builds=3,
        pointer_etag=etag,
    )
    assert again.photos_key is None
    return old.build_id
