"""Pointing ``current.json`` back at a kept build: the previous one, or one named by its id.

The build is checked as the service would check it (its files downloaded and loaded, catalog and
checksums included) before the pointer moves. The switch holds the build lease, so it never races
a build (a running build makes it stop with ``BuildRunningError``), and writes with If-Match on
the pointer it read, so a publish in between is never undone unseen.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from image_search.artefacts.loader import load_build, write_pointer
from image_search.artefacts.location import BUILD_ID, IndexLocation, beside, is_build_id
from image_search.artefacts.manifest import CATALOG_FILE, PHOTOS_FILE, RERANK_FILE, Pointer
from image_search.artefacts.publish import recently_superseded
from image_search.errors import ImageSearchError, IndexNotReadyError, PublishConflictError
from image_search.storage import lease, s3

LOG = logging.getLogger(__name__)
# Long enough for the checks of a large build; a running rollback renews it like a build.
LEASE_SECONDS = 300.0


class RollbackError(ImageSearchError):
    """The asked build cannot be served: not kept, not a build id, or its files do not load."""


@dataclass(frozen=True)
class RolledBack:
    before: str  # the build current.json named
    after: str  # the build it names now
    count: int  # images in it

    def line(self) -> str:
        return f"current.json now names build {self.after} ({self.count} images), was {self.before}"


def rollback(
    where: IndexLocation, *, build_id: str | None = None, prune_grace_seconds: float = 0.0
) -> RolledBack:
    """Point ``current.json`` at ``build_id`` (default: the newest kept build before the current
    one), once its files load; raises ``RollbackError``, ``BuildRunningError`` or
    ``PublishConflictError`` with what to do. The build it replaces is recorded as superseded,
    as a publish does, so pruning spares it while servers may still read it."""
    if build_id is not None and not is_build_id(build_id):
        raise RollbackError(f"{build_id!r} is not a build id (like {BUILD_ID.pattern})")
    with lease.held(where.client, bucket=where.bucket, key=where.lease_key, seconds=LEASE_SECONDS):
        found = s3.get_tagged(where.client, bucket=where.bucket, key=where.pointer_key)
        if found is None:
            raise IndexNotReadyError(f"nothing is published under {where.pointer_key}")
        data, etag = found
        current = Pointer.model_validate_json(data)
        kept = _kept(where)
        target = build_id or _previous(kept, current=current.build_id)
        if target == current.build_id:
            raise RollbackError(f"build {target} is already the one current.json names")
        if target not in kept:
            raise RollbackError(f"build {target} is not kept under {where.builds_prefix}")
        pointer = _pointer(where, target, files=kept[target])
        recent = recently_superseded(current, by=target, grace_seconds=prune_grace_seconds)
        pointer = pointer.model_copy(update={"superseded": recent or None})
        with tempfile.TemporaryDirectory(prefix="image-search-rollback-") as scratch:
            try:
                loaded = load_build(where, pointer=pointer, cache_dir=Path(scratch))
            except (ImageSearchError, ValueError, RuntimeError, OSError, ClientError) as exc:
                # ClientError: a file the build needs is missing (NoSuchKey).
                raise RollbackError(
                    f"build {target} does not load, so current.json stays as it was: {exc}"
                ) from exc
            count = loaded.metadata.count
            # Its files are mapped from the scratch folder, and ivf-pq's background fill stops
            # once the index is collected.
            del loaded
            gc.collect()
        written = write_pointer(where, pointer, etag=etag)
        if written is None:
            raise PublishConflictError(
                f"{where.pointer_key} changed while rolling back (a build published): nothing "
                "was changed; look at the builds again and rerun rollback"
            )
    LOG.info("rolled back from build %s to build %s", current.build_id, target)
    return RolledBack(before=current.build_id, after=target, count=count)


def _kept(where: IndexLocation) -> dict[str, set[str]]:
    """Build id → the names of its files, for every folder under builds/ named like a build."""
    kept: dict[str, set[str]] = {}
    prefix = where.builds_prefix
    for obj in s3.list_objects(where.client, bucket=where.bucket, prefix=prefix):
        build, sep, name = obj["Key"][len(prefix) :].partition("/")
        if sep and is_build_id(build):
            kept.setdefault(build, set()).add(name)
    return kept


def _previous(kept: dict[str, set[str]], *, current: str) -> str:
    # Build ids sort by the time they were made.
    older = sorted(build for build in kept if build < current)
    if not older:
        raise RollbackError(f"no build before {current} is kept (IMAGE_SEARCH_KEEP_BUILDS)")
    return older[-1]


def _pointer(where: IndexLocation, build_id: str, *, files: set[str]) -> Pointer:
    """The pointer naming the files build ``build_id`` has: the compact catalog, its photo
    fields and ivf-pq's re-rank files when it was published with them."""
    pointer = where.pointer_for(build_id)
    optional = {
        "embeddings_key": pointer.embeddings_key,
        "catalog_key": beside(pointer.index_key, CATALOG_FILE),
        "rerank_key": beside(pointer.index_key, RERANK_FILE),
        "photos_key": beside(pointer.index_key, PHOTOS_FILE),
    }
    return pointer.model_copy(
        update={
            field: key if key and key.rpartition("/")[2] in files else None
            for field, key in optional.items()
        }
    )
