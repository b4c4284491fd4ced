"""The build's intermediate files, under ``<prefix>work/build/``; the engines share them.

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
from botocore.exceptions import ClientError
from pydantic import BaseModel

from image_search.build.documents import (
    BuildPlan,
    HeldLease,
    Rows,
    ShardInput,
    ShardRef,
    ShardResult,
)
from image_search.build.shards import Shard
from image_search.model.vectors import Vectors
from image_search.storage import s3
from image_search.storage.layout import checkpoint_key

LOG = logging.getLogger(__name__)

__all__ = ["BuildPlan", "HeldLease", "Rows", "ShardInput", "ShardRef", "ShardResult"]

# Work files are small and many (one per shard): fetch them side by side, within the S3
# client's default pool of 10 connections.
PARALLEL_REQUESTS = 8
JSON = "application/json"
T = TypeVar("T")
R = TypeVar("R")


def new_plan_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def work_prefix(index_prefix: str) -> str:
    return f"{index_prefix}work/build/"


def plan_key(index_prefix: str, plan_id: str) -> str:
    return f"{work_prefix(index_prefix)}plans/{plan_id}/plan.json"


def items_key(index_prefix: str, plan_id: str) -> str:
    return f"{work_prefix(index_prefix)}plans/{plan_id}/shards.json"


def shard_folder(index_prefix: str, shard_id: str) -> str:
    return f"{work_prefix(index_prefix)}shards/{shard_id}/"


def save_plan(
    client: s3.S3Client, *, bucket: str, index_prefix: str, plan: BuildPlan, shards: list[Shard]
) -> None:
    """The shard inputs, then the item list, then the plan itself."""

    def put_input(shard: Shard) -> None:
        body = ShardInput(shard_id=shard.shard_id, model=plan.model, objects=Rows.of(shard.objects))
        _put_json(client, bucket, shard_folder(index_prefix, shard.shard_id) + "input.json", body)

    in_parallel(put_input, shards)
    items = [{"shard_id": ref.shard_id} for ref in plan.shards]
    s3.put_bytes(
        client,
        bucket=bucket,
        key=items_key(index_prefix, plan.plan_id),
        data=_dumps(items),
        content_type=JSON,
    )
    _put_json(client, bucket, plan_key(index_prefix, plan.plan_id), plan)
    LOG.info("plan %s saved: %d shard(s)", plan.plan_id, len(shards))


def load_plan(client: s3.S3Client, *, bucket: str, index_prefix: str, plan_id: str) -> BuildPlan:
    data = s3.get_bytes(client, bucket=bucket, key=plan_key(index_prefix, plan_id))
    return BuildPlan.model_validate_json(data)


def load_shard(client: s3.S3Client, *, bucket: str, index_prefix: str, shard_id: str) -> Shard:
    key = shard_folder(index_prefix, shard_id) + "input.json"
    saved = ShardInput.model_validate_json(s3.get_bytes(client, bucket=bucket, key=key))
    return Shard(shard_id=saved.shard_id, objects=saved.objects.objects())


def load_result(
    client: s3.S3Client, *, bucket: str, index_prefix: str, shard_id: str
) -> ShardResult | None:
    key = shard_folder(index_prefix, shard_id) + "result.json"
    data = s3.get_bytes_if_present(client, bucket=bucket, key=key)
    return None if data is None else ShardResult.model_validate_json(data)


def save_result(
    client: s3.S3Client,
    *,
    bucket: str,
    index_prefix: str,
    result: ShardResult,
    vectors: Vectors,
) -> ShardResult:
    """Store one shard's vectors, then its result; the result that got there first wins.

    Each attempt writes its own vectors file and the result names it, so two attempts racing on
    one shard (a retry while the first is still running) can never pair one attempt's result with
    the other's vectors.
    """
    folder = shard_folder(index_prefix, result.shard_id)
    result = result.model_copy(
        update={"vectors_key": f"{folder}vectors-{secrets.token_hex(4)}.npy"}
    )
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    s3.put_bytes(
        client,
        bucket=bucket,
        key=result.vectors_key,
        data=buffer.getvalue(),
        content_type="application/octet-stream",
    )
    if _put_new(client, bucket, folder + "result.json", _dumps(result)):
        return result
    LOG.info("shard %s was finished by another attempt; keeping its result", result.shard_id)
    winner = load_result(client, bucket=bucket, index_prefix=index_prefix, shard_id=result.shard_id)
    assert winner is not None
    return winner


def load_vectors(client: s3.S3Client, *, bucket: str, key: str) -> Vectors:
    data = s3.get_bytes(client, bucket=bucket, key=key)
    vectors: Vectors = np.load(io.BytesIO(data), allow_pickle=False)
    return vectors.astype(np.float32, copy=False)


def clean(client: s3.S3Client, *, bucket: str, index_prefix: str, plan: BuildPlan) -> int:
    """Delete this plan's work files and what earlier, unfinished plans left; return how many.

    Only keys under ``<prefix>work/build/`` are candidates, all written by the build: a plan's
    own folder, its shards, Step Functions' results, and anything older than the plan.
    """
    root = work_prefix(index_prefix)
    mine = (f"{root}plans/{plan.plan_id}/", f"{root}map-results/")
    shards = {shard_folder(index_prefix, ref.shard_id) for ref in plan.shards}
    doomed = [
        obj["Key"]
        for obj in s3.list_objects(client, bucket=bucket, prefix=root)
        if obj["Key"].startswith(mine)
        or _folder(obj["Key"]) in shards
        or obj["LastModified"] < plan.created_at
    ]
    # Earlier versions saved an unfinished build's vectors there; shards replaced it.
    legacy = checkpoint_key(index_prefix)
    s3.delete_keys(client, bucket=bucket, keys=[*doomed, legacy])
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


def _put_json(client: s3.S3Client, bucket: str, key: str, value: BaseModel) -> None:
    s3.put_bytes(client, bucket=bucket, key=key, data=_dumps(value), content_type=JSON)


def _put_new(client: s3.S3Client, bucket: str, key: str, data: bytes) -> bool:
    """Create ``key`` unless it exists (S3's If-None-Match: *); False when it already did."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=JSON, IfNoneMatch="*")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}:
            return False
        with s3.translate_errors(bucket):
            raise
    return True
