"""The Lambda entry point for API Gateway: Mangum plus the stage fix-up it lacks."""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_handler(app: FastAPI) -> LambdaHandler:
    # Lifespan off: Mangum would run it on every invocation; heavy things load once per process.
    asgi = Mangum(app, lifespan="off")

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        problem = body_problem(event)
        if problem:
            return {
                "statusCode": 400,
                "headers": {"content-type": "application/json"},
                "body": json.dumps({"detail": problem}),
                "isBase64Encoded": False,
            }
        return asgi(without_stage(event), context)

    return handler


def body_problem(event: dict[str, Any]) -> str | None:
    """Why Mangum could not turn the event's body into bytes, if it could not.

    API Gateway never sends such events, but a direct invoke can, and Mangum would raise (a 502
    at the gateway) instead of answering.
    """
    body = event.get("body")
    if not isinstance(body, str):
        return None
    if event.get("isBase64Encoded"):
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "the body is marked base64-encoded but is not valid base64"
        return None
    try:
        body.encode()
    except UnicodeEncodeError:
        return "the body is not valid UTF-8 text"
    return None


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
