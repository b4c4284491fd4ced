"""The build's counts, once per build: one log line and one metrics blob from the summary the
merge returns (its summary is the build's), or a failure count when the build failed."""

from __future__ import annotations

import logging
from typing import Any

from image_search.config import LogSettings
from image_search.observe import logs, metrics

LOG = logging.getLogger(__name__)


def failed() -> None:
    """The build raised (call it while handling the exception): logged and counted."""
    LOG.exception("index build failed")
    _build_metrics({"BuildFailures": 1.0})


def report(summary: dict[str, Any]) -> None:
    """A finished build's counts, or an abandoned one's failure."""
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
