"""A shard's result checked against the shard it claims to finish, before any of it is used.

Whoever may write the shards' work folder (on AWS every shard Lambda, docs/operations.md "Threat
model") can write a result, and the merge publishes a result's vectors under its shard's keys.
So a result is used only when

- the shard's input is the one the plan cut (a shard's id is a hash of the model and of its
  objects' keys and ETags, ``shards.shard_id``),
- the result names that shard and the build's model,
- its rows are the shard's objects minus the ones it skipped, in order, and it skips only objects
  of its shard, as they were listed,
- its photo fields, when it has them, are one per row, each within what model/photo_fields.py
  can read (the bounds are the result document's types, build/documents.py ``FieldRows``),
- its vectors file lies in the shard's folder and holds one float row per row, of the build's
  width, finite and of unit length (every embedder L2-normalises).

Anything else raises ``BadResultError``: the shard counts as unfinished, so its images are missing
from one build and embedded by the next, never published under another image's key.
"""

from __future__ import annotations

from image_search.artefacts import vector_file
from image_search.artefacts.location import IndexLocation
from image_search.build import work
from image_search.build.shards import Shard, shard_id
from image_search.model.vectors import Vectors


class BadResultError(ValueError):
    """A shard's saved result that does not match its shard."""


def check_input(shard: Shard, ref: work.ShardRef, *, model: str, salt: str) -> None:
    """``shard`` (read from its input file) is the shard the plan cut as ``ref``."""
    same = shard.shard_id == ref.shard_id and len(shard.objects) == ref.count
    if not same or shard_id(shard.objects, model=model, salt=salt) != ref.shard_id:
        raise BadResultError("its input is not the one the plan cut")


def check_result(
    where: IndexLocation, shard: Shard, result: work.ShardResult, *, model: str, dim: int | None
) -> Vectors:
    """The result's vectors, after checking the result against ``shard``; ``dim`` is the
    build's width when known (None: any width, for the caller to compare across shards)."""
    if result.shard_id != shard.shard_id:
        raise BadResultError(f"it names shard {result.shard_id!r}")
    if result.model != model:
        raise BadResultError(f"it was embedded with model {result.model!r}, not {model!r}")
    if result.rows != expected_rows(shard, result):
        raise BadResultError("its rows are not its shard's objects, in order, minus those skipped")
    if result.fields is not None and len(result.fields) != len(result.rows):
        raise BadResultError(
            f"it has photo fields for {len(result.fields)} rows, not its {len(result.rows)}"
        )
    vectors = _load(where, result)
    _check_vectors(vectors, rows=len(result.rows), dim=dim)
    return vectors


def expected_rows(shard: Shard, result: work.ShardResult) -> work.Rows:
    """The shard's objects that ``result`` does not skip, in the shard's order."""
    listed = {obj.key: obj.etag for obj in shard.objects}
    skipped = [s.key for s in result.skipped]
    if len(set(skipped)) != len(skipped) or not listed.keys() >= set(skipped):
        raise BadResultError("it skips objects that are not in its shard, or one twice")
    if any(s.etag not in (None, listed[s.key]) for s in result.skipped):
        raise BadResultError("it skips an object under an ETag its shard does not list")
    gone = set(skipped)
    return work.Rows.of(obj for obj in shard.objects if obj.key not in gone)


def _load(where: IndexLocation, result: work.ShardResult) -> Vectors:
    folder = where.shard_folder(result.shard_id)
    name = result.vectors_key.removeprefix(folder)
    if not result.vectors_key.startswith(folder) or "/" in name or not name.endswith(".npy"):
        raise BadResultError(f"its vectors file {result.vectors_key!r} is not in its folder")
    try:
        vectors, _ = vector_file.read_npy(
            where.client, bucket=where.bucket, key=result.vectors_key, rows=len(result.rows)
        )
    except vector_file.BadVectorsError as exc:
        raise BadResultError(str(exc)) from exc
    return vectors


def _check_vectors(vectors: Vectors, *, rows: int, dim: int | None) -> None:
    try:
        vector_file.check_vectors(vectors, rows=rows, dim=dim)
    except vector_file.BadVectorsError as exc:
        raise BadResultError(str(exc)) from exc
