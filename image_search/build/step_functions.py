"""The build on AWS Lambda: one handler per state of the state machine in template.yaml.

    Plan (plan_handler) → Map, DISTRIBUTED, one child per shard (embed_shard_handler) → Merge

Each state's input and output is small JSON; the work itself (the plan, the shard inputs and
results) lives in S3 under ``<prefix>work/build/``, so a failed execution loses no finished
shard: the next one plans again and finds them. The plan takes the build lease for the whole
execution (no process lives between the states to renew it); the merge releases it, and so does
the state machine's ``Abandon`` state when the shards or the merge fail.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from image_search.artefacts.location import IndexLocation
from image_search.build import work
from image_search.build.merge_stage import merge_build
from image_search.build.options import BuildOptions
from image_search.build.plan_stage import plan_build
from image_search.build.shard_stage import embed_shard
from image_search.config import Settings, get_settings
from image_search.errors import BuildRunningError, ConfigError
from image_search.messages import settings_problem
from image_search.model.factory import embedder_for
from image_search.storage import lease, s3

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


class PlanEvent(BaseModel):
    """What the Plan state sends: the execution's id (the build lease's owner, so that any later
    state can give the lease back without the plan) and the execution's input."""

    model_config = ConfigDict(extra="ignore")

    execution: str
    input: StartEvent


class MergeEvent(BaseModel):
    """The plan's id; ``abandon`` when a state failed: only give the execution's lease back.

    ``execution`` is the lease's owner. Abandon needs nothing else: the plan may never have been
    written (the Plan state failed) or may be gone.
    """

    model_config = ConfigDict(extra="ignore")

    plan_id: str | None = None
    execution: str | None = None
    abandon: bool = False


def plan_handler(event: dict[str, Any] | None, context: object) -> dict[str, Any]:
    """List, diff and save the plan; tell the state machine whether there is work and where."""
    owner = None
    if event and "execution" in event:  # from the state machine; a hand-made call has no owner
        sent = PlanEvent.model_validate(event)
        request, owner = sent.input, sent.execution
    else:
        request = StartEvent.model_validate(event or {})
    settings = _settings()
    where, options = _location(settings, _s3_client()), BuildOptions.of(settings)
    if request.dry_run:
        model = embedder_for(settings).identity
        planned = plan_build(where, options, model=model, full=request.full, dry_run=True)
        return _planned(where, planned.plan.plan_id, planned.has_work, planned.report.summary())
    try:
        taken = lease.acquire(
            where.client,
            bucket=where.bucket,
            key=where.lease_key,
            seconds=options.build_lease_seconds,
            owner=owner,
        )
    except BuildRunningError as exc:
        # Not a failure: the build holding the lease does the work, and its shards stay reusable.
        LOG.warning("not building: %s", exc)
        return {"has_work": False, "state": "busy", "detail": str(exc)}
    try:
        held = work.HeldLease(record=taken.record, etag=taken.etag)
        # The model's identity (an ONNX export names the model it came from), without loading it.
        model = embedder_for(settings).identity
        planned = plan_build(where, options, model=model, full=request.full, lease=held)
    except BaseException:
        taken.release()
        raise
    if not planned.has_work:
        taken.release()
    output = _planned(where, planned.plan.plan_id, planned.has_work, planned.report.summary())
    output["shards"] = len(planned.shards)
    output["images"] = sum(len(shard.objects) for shard in planned.shards)
    LOG.info(
        "index build planned: %s", json.dumps({k: v for k, v in output.items() if k != "summary"})
    )
    return output


def embed_shard_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Embed one shard (or find it done); a small summary, as Step Functions keeps each one."""
    request = ShardEvent.model_validate(event)
    settings = _settings()
    where = _location(settings, _s3_client(settings.download_workers + 2))
    shard = work.load_shard(where, shard_id=request.shard_id)
    outcome = embed_shard(
        where,
        BuildOptions.of(settings),
        shard,
        plan_id=request.plan_id,
        embedder=embedder_for(settings),
    )
    return outcome.summary()


def merge_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Publish the plan's build from the shards' results and give the lease back; the summary
    is the execution's output. With ``abandon``, only give the execution's lease back."""
    request = MergeEvent.model_validate(event)
    settings = _settings()
    where = _location(settings, _s3_client())
    if request.abandon:
        return _abandon(where, request)
    if request.plan_id is None:
        raise ConfigError("the merge needs the plan's id (plan_id)")
    plan = work.load_plan(where, plan_id=request.plan_id)
    held = _lease(where, plan)
    try:
        report = merge_build(where, BuildOptions.of(settings), plan, held=held)
        # The build's time is the execution's, from the plan to now.
        report.seconds = (datetime.now(UTC) - plan.created_at).total_seconds()
        summary = report.summary()
    finally:
        if held is not None:
            held.release()
    LOG.info("index build finished: %s", json.dumps(summary))
    return summary


def _abandon(where: IndexLocation, request: MergeEvent) -> dict[str, Any]:
    """Give the lease back if this execution holds it, whatever state failed and whatever became
    of its plan: by owner, so a merge that renewed the lease (its ETag moved) is no obstacle."""
    owner = request.execution
    if owner is None and request.plan_id is not None:  # an execution started before owners
        plan = work.load_plan(where, plan_id=request.plan_id)
        owner = plan.lease.record.owner if plan.lease is not None else None
    released = owner is not None and lease.release_owned(
        where.client, bucket=where.bucket, key=where.lease_key, owner=owner
    )
    LOG.error(
        "index build abandoned (plan %s); lease %s; finished shards wait for the next build",
        request.plan_id or "not written",
        "given back" if released else "not held by this execution",
    )
    return {"state": "abandoned", "plan_id": request.plan_id, "lease_released": released}


def _planned(
    where: IndexLocation, plan_id: str, has_work: bool, summary: dict[str, Any]
) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "has_work": has_work,
        "items_key": where.items_key(plan_id),
        "summary": summary,
    }


def _location(settings: Settings, client: s3.S3Client) -> IndexLocation:
    return IndexLocation(client, settings.bucket, settings.index_prefix)


def _lease(where: IndexLocation, plan: work.BuildPlan) -> lease.Lease | None:
    if plan.lease is None:
        return None
    return lease.Lease(
        where.client,
        bucket=where.bucket,
        key=where.lease_key,
        record=plan.lease.record,
        etag=plan.lease.etag,
    )


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        raise ConfigError(settings_problem(exc, flags=False)) from None


@lru_cache(maxsize=2)
def _s3_client(max_connections: int = 10) -> s3.S3Client:
    return s3.make_client(max_connections=max_connections)
