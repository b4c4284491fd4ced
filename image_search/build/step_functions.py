"""The build on AWS Lambda: one handler per state of the state machine in template.yaml.

    Plan (plan_handler) → Map, DISTRIBUTED, one child per shard (embed_shard_handler) → Merge

Each state's input and output is small JSON; the work itself (the plan, the shard inputs and
results) lives in S3 under ``<prefix>work/build/``, so a failed execution loses nothing: the next
one plans again and finds the shards already finished.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict

from image_search.build import work
from image_search.build.merge_stage import merge_build
from image_search.build.plan_stage import plan_build
from image_search.build.shard_stage import embed_shard
from image_search.config import get_settings
from image_search.model.cache import embedder_for
from image_search.storage import s3

LOG = logging.getLogger(__name__)


class StartEvent(BaseModel):
    """The execution's input: the schedule's EventBridge event (no options) or a hand-made one."""

    model_config = ConfigDict(extra="ignore")

    full: bool = False
    dry_run: bool = False


class ShardEvent(BaseModel):
    """One Map item after the ItemSelector: the plan and one of its shards."""

    model_config = ConfigDict(extra="ignore")

    plan_id: str
    shard_id: str


class MergeEvent(BaseModel):
    """The plan state's output, which the Map state passes on."""

    model_config = ConfigDict(extra="ignore")

    plan_id: str


def plan_handler(event: dict[str, Any] | None, context: object) -> dict[str, Any]:
    """List, diff and save the plan; tell the state machine whether there is work and where."""
    request = StartEvent.model_validate(event or {})
    settings = get_settings()
    planned = plan_build(settings, client=_s3_client(), full=request.full, dry_run=request.dry_run)
    plan_id = planned.plan.plan_id
    output = {
        "plan_id": plan_id,
        "has_work": planned.has_work,
        "items_key": work.items_key(settings.index_prefix, plan_id),
        "shards": len(planned.shards),
        "images": sum(len(shard.objects) for shard in planned.shards),
        "summary": planned.report.summary(),
    }
    LOG.info(
        "index build planned: %s", json.dumps({k: v for k, v in output.items() if k != "summary"})
    )
    return output


def embed_shard_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Embed one shard (or find it done); a small summary, as Step Functions keeps each one."""
    request = ShardEvent.model_validate(event)
    settings = get_settings()
    client = _s3_client(settings.download_workers + 2)
    shard = work.load_shard(
        client,
        bucket=settings.bucket,
        index_prefix=settings.index_prefix,
        shard_id=request.shard_id,
    )
    outcome = embed_shard(
        settings, shard, plan_id=request.plan_id, client=client, embedder=embedder_for(settings)
    )
    return outcome.summary()


def merge_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Publish the plan's build from the shards' results; the summary is the execution's output."""
    request = MergeEvent.model_validate(event)
    settings = get_settings()
    client = _s3_client()
    plan = work.load_plan(
        client, bucket=settings.bucket, index_prefix=settings.index_prefix, plan_id=request.plan_id
    )
    summary = merge_build(settings, plan, client=client).summary()
    LOG.info("index build finished: %s", json.dumps(summary))
    return summary


@lru_cache(maxsize=2)
def _s3_client(max_connections: int = 10) -> s3.S3Client:
    return s3.make_client(max_connections=max_connections)
