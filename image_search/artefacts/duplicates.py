"""A build's near-duplicate groups as a file beside its metadata: ``builds/<id>/duplicates.json``.

Named by the metadata's ``duplicates`` field; builds made before it have none and still load.
Groups hold keys (not row numbers), so other tools can read the file without the index.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from image_search.artefacts.catalog import Catalog
from image_search.artefacts.location import DUPLICATES_FILE, IndexLocation, local_folder
from image_search.artefacts.versions import Versioned
from image_search.errors import IndexMismatchError
from image_search.index.duplicates import Group
from image_search.storage import s3
from image_search.storage.cache import cached

SCHEMA_VERSION = 1


class GroupDoc(BaseModel):
    keys: list[str]  # sorted
    # A maximum spanning tree over the group: (position in keys, position in keys, cosine).
    edges: list[tuple[int, int, float]]


class DuplicatesDoc(Versioned):
    FORMAT: ClassVar[int] = SCHEMA_VERSION
    DOCUMENT: ClassVar[str] = "duplicates.json"

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    build_id: str
    min_score: float
    groups: list[GroupDoc]


def write(where: IndexLocation, *, key: str, doc: DuplicatesDoc) -> None:
    data = doc.model_dump_json().encode()
    s3.put_bytes(
        where.client, bucket=where.bucket, key=key, data=data, content_type="application/json"
    )


def read(where: IndexLocation, *, key: str, build_id: str, cache_dir: Path) -> DuplicatesDoc:
    """The file at ``key``, through this process's local copy of ``build_id``'s files."""
    path = local_folder(cache_dir, build_id) / DUPLICATES_FILE
    path = cached(where.client, bucket=where.bucket, key=key, path=path)
    return DuplicatesDoc.model_validate_json(path.read_bytes())


def groups_of(doc: DuplicatesDoc, *, catalog: Catalog) -> list[Group]:
    """The document's groups as rows of ``catalog``'s build. Raises ``IndexMismatchError`` when
    it belongs to another build or names what the build does not hold: a key, a member."""

    def refuse(what: str) -> IndexMismatchError:
        return IndexMismatchError(
            f"build {catalog.build_id}: its near-duplicate groups {what}: publish the build "
            "again (python -m image_search build --full)"
        )

    if doc.build_id != catalog.build_id:
        raise refuse(f"are those of build {doc.build_id!r}")
    if not math.isfinite(doc.min_score):
        raise refuse(f"were found at score {doc.min_score}")
    groups = []
    for group in doc.groups:
        rows = [catalog.row(key) for key in group.keys]
        if None in rows:
            unknown = next(key for key, row in zip(group.keys, rows, strict=True) if row is None)
            raise refuse(f"name {unknown!r}, which it does not index")
        if len(set(rows)) != len(rows) or len(rows) < 2 or not group.edges:
            raise refuse("hold a group that is not a group (a key twice, one member, no pair)")
        for a, b, score in group.edges:
            if not (0 <= a < len(rows) and 0 <= b < len(rows) and math.isfinite(score)):
                raise refuse(f"hold a pair ({a}, {b}, {score}) outside its group")
        groups.append(Group(rows=[row for row in rows if row is not None], edges=group.edges))
    return groups
