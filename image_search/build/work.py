"""The build's intermediate files, under ``<prefix>work/build/`` (key names in
artefacts/location.py); the engines share them.

::

    plans/<plan_id>/plan.json        reused rows (from the published build) and the shard list
    plans/<plan_id>/shards.json      the shard list as a JSON array (Distributed Map's ItemReader)
    map-results/…                    Step Functions' ResultWriter output (template.yaml)
    shards/<shard_id>/input.json     the objects of one shard
    shards/<shard_id>/vectors-<attempt>.npy
    shards/<shard_id>/result.json    written once (If-None-Match: *) and last: the shard is done

None of it is a published artefact; the merge deletes it after publishing.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
from pydantic import BaseModel

from image_search.artefacts.location import IndexLocation
from image_search.build.documents import (
    BuildPlan,
    FieldRows,
    HeldLease,
    Rows,
    ShardInput,
    ShardRef,
    ShardResult,
)
from image_search.build.shards import Shard
from image_search.model.vectors import Vectors
from image_search.storage import s3

LOG = logging.getLogger(__name__)

__all__ = ["BuildPlan", "FieldRows", "HeldLease", "Rows", "ShardInput", "ShardRef", "ShardResult"]

# Work files are small and many (one per shard): fetch them side by side, within the S3
# client's default pool of 10 connections.
PARALLEL_REQUESTS = 8
JSON = "application/json"
T = TypeVar("T")
R = TypeVar("R")


def new_plan_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def save_plan(where: IndexLocation, *, plan: BuildPlan, shards: list[Shard]) -> None:
    """The shard inputs, then the item list, then the plan itself."""

    def put_input(shard: Shard) -> None:
        body = ShardInput(shard_id=shard.shard_id, model=plan.model, objects=Rows.of(shard.objects))
        _put_json(where, where.shard_input_key(shard.shard_id), body)

    in_parallel(put_input, shards)
    items = [{"shard_id": ref.shard_id} for ref in plan.shards]
    s3.put_bytes(
        where.client,
        bucket=where.bucket,
        key=where.items_key(plan.plan_id),
        data=_dumps(items),
        content_type=JSON,
    )
    _put_json(where, where.plan_key(plan.plan_id), plan)
    LOG.info("plan %s saved: %d shard(s)", plan.plan_id, len(shards))


def load_plan(where: IndexLocation, *, plan_id: str) -> BuildPlan:
    data = s3.get_bytes(where.client, bucket=where.bucket, key=where.plan_key(plan_id))
    return BuildPlan.model_validate_json(data)


def load_shard(where: IndexLocation, *, shard_id: str) -> Shard:
    key = where.shard_input_key(shard_id)
    saved = ShardInput.model_validate_json(s3.get_bytes(where.client, bucket=where.bucket, key=key))
    return Shard(shard_id=saved.shard_id, objects=saved.objects.objects())


def load_result(where: IndexLocation, *, shard_id: str) -> ShardResult | None:
    key = where.shard_result_key(shard_id)
    data = s3.get_bytes_if_present(where.client, bucket=where.bucket, key=key)
    return None if data is None else ShardResult.model_validate_json(data)


def save_result(
    where: IndexLocation, *, result: ShardResult, vectors: Vectors, replace: bool = False
) -> ShardResult:
    """Store one shard's vectors, then its result; the result that got there first wins, unless
    ``replace`` (the saved one was refused by ``shard_check``).

    Each attempt writes its own vectors file and the result names it, so two attempts racing on
    one shard (a retry while the first is still running) can never pair one attempt's result with
    the other's vectors, whichever result stays.
    """
    folder = where.shard_folder(result.shard_id)
    result = result.model_copy(
        update={"vectors_key": f"{folder}vectors-{secrets.token_hex(4)}.npy"}
    )
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    s3.put_bytes(
        where.client,
        bucket=where.bucket,
        key=result.vectors_key,
        data=buffer.getvalue(),
        content_type="application/octet-stream",
    )
    key = folder + "result.json"
    if replace:
        _put_json(where, key, result)
        return result
    if s3.create(
        where.client, bucket=where.bucket, key=key, data=_dumps(result), content_type=JSON
    ):
        return result
    LOG.info("shard %s was finished by another attempt; keeping its result", result.shard_id)
    winner = load_result(where, shard_id=result.shard_id)
    assert winner is not None
    return winner


def load_vectors(client: s3.S3Client, *, bucket: str, key: str) -> Vectors:
    data = s3.get_bytes(client, bucket=bucket, key=key)
    vectors: Vectors = np.load(io.BytesIO(data), allow_pickle=False)
    return vectors.astype(np.float32, copy=False)


def clean(where: IndexLocation, *, plan: BuildPlan) -> int:
    """Delete this plan's work files and what earlier, unfinished plans left; return how many.

    Only keys under ``<prefix>work/build/`` are candidates, all written by the build: a plan's
    own folder, its shards, Step Functions' results, and anything older than the plan.
    """
    root = where.work_prefix
    mine = (where.plan_folder(plan.plan_id), where.map_results_prefix)
    shards = {where.shard_folder(ref.shard_id) for ref in plan.shards}
    doomed = [
        obj["Key"]
        for obj in s3.list_objects(where.client, bucket=where.bucket, prefix=root)
        if obj["Key"].startswith(mine)
        or _folder(obj["Key"]) in shards
        or obj["LastModified"] < plan.created_at
    ]
    # Earlier versions saved an unfinished build's vectors there; shards replaced it.
    s3.delete_keys(where.client, bucket=where.bucket, keys=[*doomed, where.checkpoint_key])
    return len(doomed)


def in_parallel(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[function(item) for item in items]`` on a few threads; the first exception is raised."""
    with ThreadPoolExecutor(PARALLEL_REQUESTS, thread_name_prefix="work") as pool:
        return list(pool.map(function, items))


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/"


def _dumps(value: BaseModel | list[dict[str, str]]) -> bytes:
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    return json.dumps(value).encode()


def _put_json(where: IndexLocation, key: str, value: BaseModel) -> None:
    s3.put_bytes(where.client, bucket=where.bucket, key=key, data=_dumps(value), content_type=JSON)
