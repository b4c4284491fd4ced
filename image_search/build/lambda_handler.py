"""The index build on Lambda: a scheduled (or hand-made) event in, a JSON-able summary out.

Lambda stops a function at 15 minutes. The build stops ~45 s before that with the vectors it
embedded saved to ``<prefix>work/checkpoint.npz``; this handler then invokes its own function
again (asynchronously) so the next run picks up from the checkpoint without waiting a whole
schedule period. The scheduled run resumes from the checkpoint too if the chain was cut.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from image_search.build.pipeline import run_build
from image_search.build.report import BuildReport
from image_search.config import Settings, get_settings
from image_search.errors import BuildRunningError, ConfigError
from image_search.messages import settings_problem
from image_search.model.cache import embedder_for
from image_search.storage import s3

LOG = logging.getLogger(__name__)

# Lambda's recursive-loop detection stops a chain of functions invoking each other after about
# 16 hops; 12 continuations of 15 minutes (3 hours of embedding) stay clear of it.
MAX_CONTINUATIONS = 12
CONTINUATION_SOURCE = "image-search.continuation"


class LambdaContext(Protocol):
    invoked_function_arn: str

    def get_remaining_time_in_millis(self) -> int: ...


class BuildEvent(BaseModel):
    """The handler's options; a scheduled EventBridge event carries none of them."""

    model_config = ConfigDict(extra="ignore")

    full: bool = False
    dry_run: bool = False
    continuation: int = Field(default=0, ge=0)


def build_handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    """Run one incremental build, stopping before the deadline; continue it if unfinished."""
    request = BuildEvent.model_validate(event or {})
    settings = _settings()
    try:
        report = run_build(
            settings,
            client=_s3_client(settings.download_workers + 2),
            embedder=embedder_for(settings),
            # A continuation must resume from the checkpoint, which a full build would ignore.
            full=request.full and not request.continuation,
            dry_run=request.dry_run,
            time_left=lambda: context.get_remaining_time_in_millis() / 1000,
        )
    except BuildRunningError as exc:
        # Not a failure: the build that holds the lease does the work (and resumes any
        # checkpoint); an error here would only raise alarms for a normal overlap.
        LOG.warning("not building: %s", exc)
        return {"state": "busy", "detail": str(exc), "continuation": request.continuation}
    summary = {**report.summary(), "continuation": request.continuation}
    if not report.complete:
        summary["continued"] = _continue(request, report, context)
    LOG.info("index build finished: %s", json.dumps(summary))
    return summary


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        raise ConfigError(settings_problem(exc, flags=False)) from None


def _continue(request: BuildEvent, report: BuildReport, context: LambdaContext) -> bool:
    """Invoke this function again to finish the build; False when that would not help."""
    if report.embedded == 0:
        # Nothing got embedded (every image in the first batch failed, or the deadline was
        # already too close): another run would do the same, so leave it to the schedule.
        LOG.error("build made no progress before the deadline; not continuing it")
        return False
    if request.continuation >= MAX_CONTINUATIONS:
        LOG.warning(
            "build still unfinished after %d continuations; the schedule resumes it",
            request.continuation,
        )
        return False
    payload = {"source": CONTINUATION_SOURCE, "continuation": request.continuation + 1}
    try:
        _lambda_client().invoke(
            FunctionName=context.invoked_function_arn,
            InvocationType="Event",
            Payload=json.dumps(payload).encode(),
        )
    except Exception:  # the checkpoint is saved: the next scheduled run resumes from it
        LOG.exception("could not invoke the continuation; the next scheduled run resumes")
        return False
    LOG.info("continuing the build in a new invocation (%d)", payload["continuation"])
    return True


@lru_cache(maxsize=1)
def _s3_client(max_connections: int) -> s3.S3Client:
    return s3.make_client(max_connections=max_connections)


@lru_cache(maxsize=1)
def _lambda_client() -> Any:
    import boto3

    return boto3.session.Session().client("lambda")
