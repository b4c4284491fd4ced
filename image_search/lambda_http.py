"""The Lambda entry point for API Gateway: Mangum plus the stage fix-up it lacks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_handler(app: FastAPI) -> LambdaHandler:
    # Lifespan off: Mangum would run it on every invocation; heavy things load once per process.
    asgi = Mangum(app, lifespan="off")

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return asgi(without_stage(event), context)

    return handler


def without_stage(event: dict[str, Any]) -> dict[str, Any]:
    """Drop a named stage from an HTTP API (v2) event's path.

    HTTP APIs put a named stage in the path (``/prod/image_search/search``) while REST APIs
    keep it in ``requestContext`` only; the app's routes know no stage.
    """
    context = event.get("requestContext", {})
    stage = context.get("stage", "$default")
    path = context.get("http", {}).get("path", "")
    prefix = f"/{stage}"
    if event.get("version") != "2.0" or stage == "$default" or not path.startswith(prefix + "/"):
        return event
    event = copy.deepcopy(event)
    event["requestContext"]["http"]["path"] = path[len(prefix) :]
    event["rawPath"] = event.get("rawPath", path).removeprefix(prefix)
    return event
