"""The Lambda functions, observed: logging set up per function, each invocation's log lines
carrying its request id and cold start (Powertools' ``inject_lambda_context``), and the build's
counts as one log line and one metrics blob (from the merge, whose summary is the build's)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from image_search.config import LogSettings
from image_search.observe import logs, metrics

LOG = logging.getLogger(__name__)

Handler = Callable[[Any, Any], dict[str, Any]]


# The build's state machine runs these (template.yaml); everything else is the API.
BUILD_HANDLERS = {"handler.plan", "handler.embed_shard", "handler.merge"}


def configure_logging(handler_name: str | None) -> None:
    """Logging for the function Lambda runs (``_HANDLER``: handler.handler or a build stage)."""
    service = logs.BUILD if handler_name in BUILD_HANDLERS else logs.API
    logs.configure(service, log_format=LogSettings().log_format)


def observed(handler: Handler, *, service: str) -> Handler:
    """``handler`` with the invocation's fields on every JSON log line (when logs are JSON and
    Lambda passed a context)."""
    with_context = logs.powertools_logger(service).inject_lambda_context(handler, clear_state=True)

    def run(event: Any, context: Any) -> dict[str, Any]:
        if context is None or not logs.json_lines(LogSettings().log_format):
            return handler(event, context)
        result: dict[str, Any] = with_context(event, context)
        return result

    return run


def observed_build(handler: Handler) -> Handler:
    """The build function, observed, with its counts logged and sent as metrics."""

    def build(event: Any, context: Any) -> dict[str, Any]:
        try:
            summary = handler(event, context)
        except Exception:
            LOG.exception("index build failed")
            _build_metrics({"BuildFailures": 1.0})
            raise
        _report(summary)
        return summary

    return observed(build, service=logs.BUILD)


def _report(summary: dict[str, Any]) -> None:
    if summary.get("state") == "abandoned":  # the state machine's shards or merge failed
        LOG.error("index build abandoned", extra={"build": summary})
        _build_metrics({"BuildFailures": 1.0})
        return
    fields = {name: summary.get(name) for name in BUILD_FIELDS}
    LOG.info("index build %s", summary.get("state"), extra={"build": fields})
    seconds = float(summary.get("seconds") or 0.0)
    embedded = float(summary.get("embedded") or 0)
    values = {
        "BuildsPublished": float(bool(summary.get("published"))),
        "ImagesAdded": float(summary.get("added") or 0),
        "ImagesUpdated": float(summary.get("updated") or 0),
        "ImagesRemoved": float(summary.get("removed") or 0),
        "ImagesSkipped": float(summary.get("skipped") or 0),
        "ImagesEmbedded": embedded,
        "ImagesPerSecond": embedded / seconds if seconds > 0 else 0.0,
        "BuildDuration": seconds,
        "IndexSize": float(summary.get("count") or 0),
    }
    if summary.get("duplicate_groups") is not None:
        values["DuplicateGroups"] = float(summary["duplicate_groups"])
    _build_metrics(values)


BUILD_FIELDS = (
    "state",
    "build_id",
    "count",
    "added",
    "updated",
    "reused",
    "removed",
    "embedded",
    "resumed",
    "skipped",
    "duplicate_groups",
    "seconds",
)


def _build_metrics(values: dict[str, float]) -> None:
    if logs.json_lines(LogSettings().log_format):
        metrics.emit(logs.BUILD, metrics.BUILD_METRICS, values)


def function_handler_name() -> str:
    return os.environ.get("_HANDLER", "handler.handler")
