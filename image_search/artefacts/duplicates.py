"""A build's near-duplicate groups as a file beside its metadata: ``builds/<id>/duplicates.json``.

Named by the metadata's ``duplicates`` field; builds made before it have none and still load.
Groups hold keys (not row numbers), so other tools can read the file without the index.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from image_search.artefacts.location import DUPLICATES_FILE, IndexLocation
from image_search.storage import s3
from image_search.storage.cache import cached

SCHEMA_VERSION = 1


class GroupDoc(BaseModel):
    keys: list[str]  # sorted
    # A maximum spanning tree over the group: (position in keys, position in keys, cosine).
    edges: list[tuple[int, int, float]]


class DuplicatesDoc(BaseModel):
    schema_version: int = SCHEMA_VERSION
    build_id: str
    min_score: float
    groups: list[GroupDoc]


def write(where: IndexLocation, *, key: str, doc: DuplicatesDoc) -> None:
    data = doc.model_dump_json().encode()
    s3.put_bytes(
        where.client, bucket=where.bucket, key=key, data=data, content_type="application/json"
    )


def read(where: IndexLocation, *, key: str, cache_dir: Path) -> DuplicatesDoc:
    """The file at ``key``, through this process's local copy of the build's files."""
    build_id = key.rstrip("/").split("/")[-2]
    path = cached(
        where.client, bucket=where.bucket, key=key, path=cache_dir / build_id / DUPLICATES_FILE
    )
    return DuplicatesDoc.model_validate_json(path.read_bytes())
