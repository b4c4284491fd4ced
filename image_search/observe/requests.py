"""One log line and one metrics blob per HTTP request: route, status, timings, results.

An ASGI middleware around the app. Routes note what a search found in the request's record (a
context variable, which FastAPI copies into the thread a route runs in); the middleware writes
it out once the answer has gone. Only the route's template is logged, never the path, query
string, headers or body: no API key, query text or presigned URL reaches the logs.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from image_search.observe import metrics
from image_search.observe.logs import API

LOG = logging.getLogger(__name__)

# Route names (the route functions in serve/routes/search.py) that are searches, by kind.
SEARCH_KINDS = {"search": "text", "search_by_image": "image", "similar": "similar"}


@dataclass
class Record:
    results: int | None = None  # set by a search that answered
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool | None = None  # text searches: the vector came from the cache
    index_size: int | None = None  # images in the build that answered
    index_created_at: datetime | None = None  # when that build was made


_CURRENT: ContextVar[Record | None] = ContextVar("image_search_request", default=None)


def note_search(
    *,
    results: int,
    timings: dict[str, float],
    cached: bool | None,
    index_size: int,
    index_created_at: datetime,
) -> None:
    """What the current request's search found (a no-op outside a request)."""
    record = _CURRENT.get()
    if record is not None:
        record.results, record.timings, record.cached = results, timings, cached
        record.index_size, record.index_created_at = index_size, index_created_at


class RequestLog:
    def __init__(self, app: ASGIApp, *, structured: bool) -> None:
        self.app = app
        # JSON lines: every request at INFO with an EMF blob. Text: a DEBUG line, since uvicorn
        # already writes an access line per request.
        self.structured = structured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = Record()
        token = _CURRENT.set(record)
        status = 500  # unless an answer starts
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _CURRENT.reset(token)
            elapsed = (time.perf_counter() - started) * 1000
            self._write(scope, record, status=status, ms=elapsed)

    def _write(self, scope: Scope, record: Record, *, status: int, ms: float) -> None:
        route = scope.get("route")
        name = getattr(route, "name", None) or "unmatched"
        template = getattr(route, "path", None) or "unmatched"
        kind = SEARCH_KINDS.get(name, name)
        fields: dict[str, Any] = {
            "route": f"{scope['method']} {template}",
            "kind": kind,
            "status": status,
            "ms": round(ms, 2),
        }
        searched = record.results is not None and status == 200
        if searched:
            fields.update(results=record.results, timings=record.timings)
            if record.cached is not None:
                fields["cached"] = record.cached
        level = logging.INFO if self.structured else logging.DEBUG
        level = logging.WARNING if status >= 500 else level
        LOG.log(level, "%s %d in %.1f ms", fields["route"], status, ms, extra=fields)
        if self.structured:
            values = _values(record, status=status, ms=ms, searched=searched)
            metrics.emit(API, metrics.API_METRICS, values, dimensions={"kind": kind})


def _values(record: Record, *, status: int, ms: float, searched: bool) -> dict[str, float]:
    values = {
        "Requests": 1.0,
        "ClientErrors": float(400 <= status < 500),
        "ServerErrors": float(status >= 500),
        "Latency": ms,
    }
    if not searched:
        return values
    values |= {"Searches": 1.0, "Results": float(record.results or 0)}
    values["EmptyResults"] = float(not record.results)
    values |= {metrics.STAGES[stage]: ms for stage, ms in record.timings.items()}
    if record.cached is not None:
        values["TextCacheHits"] = float(record.cached)
    if record.index_size is not None and record.index_created_at is not None:
        age = datetime.now(UTC) - record.index_created_at
        values |= {"IndexAge": max(0.0, age.total_seconds()), "IndexSize": float(record.index_size)}
    return values
