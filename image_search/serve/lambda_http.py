"""The Lambda entry point for API Gateway: Mangum plus the checks and stage fix-up it lacks."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

LOG = logging.getLogger(__name__)

LambdaHandler = Callable[[Any, Any], dict[str, Any]]
NOT_HTTP = (
    "this function answers API Gateway requests (REST API or HTTP API events); "
    "the event it was invoked with is not one"
)


def make_handler(app: FastAPI) -> LambdaHandler:
    # Lifespan off: Mangum would run it on every invocation; heavy things load once per process.
    asgi = Mangum(app, lifespan="off")

    def handler(event: Any, context: Any) -> dict[str, Any]:
        problem = event_problem(asgi, event, context)
        if problem:
            LOG.warning("refused an invoke: %s", problem)
            return {
                "statusCode": 400,
                "headers": {"content-type": "application/json"},
                "body": json.dumps({"detail": problem}),
                "isBase64Encoded": False,
            }
        return asgi(without_stage(event), context)

    return handler


def event_problem(asgi: Mangum, event: Any, context: Any) -> str | None:
    """Why ``event`` cannot be answered as an HTTP request, if it cannot.

    API Gateway never sends such events, but a direct invoke (a test console, a schedule rule
    aimed at the wrong function) can, and Mangum would raise (a 502 at the gateway, an
    unhandled error for the caller) instead of answering.
    """
    if not isinstance(event, dict) or not isinstance(event.get("requestContext"), dict):
        return NOT_HTTP
    problem = request_line_problem(event) or body_problem(event)
    if problem:
        return problem
    try:
        # Mangum reads the request line and headers with plain indexing and str methods: a field
        # missing or of the wrong type fails here, before the app runs.
        asgi.infer(event, context).scope  # noqa: B018
    except Exception as exc:  # any shape error of the event means the same thing
        return f"{NOT_HTTP} ({type(exc).__name__}: {exc})"
    return None


def request_line_problem(event: dict[str, Any]) -> str | None:
    """Why the event names no method, path or headers the app could route, if it does not."""
    if event.get("version") == "2.0":
        http = event["requestContext"].get("http")
        if not isinstance(http, dict):
            return f"{NOT_HTTP}: a version 2.0 event needs requestContext.http"
        fields = {"requestContext.http.method": http.get("method")}
        fields["requestContext.http.path"] = http.get("path")
    else:
        fields = {"httpMethod": event.get("httpMethod"), "path": event.get("path")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            return f"{NOT_HTTP}: {name} must be a non-empty string"
    headers = event.get("headers")
    if headers is not None and not (
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    ):
        return f"{NOT_HTTP}: headers must map names to strings"
    return None


def body_problem(event: dict[str, Any]) -> str | None:
    """Why Mangum could not turn the event's body into bytes, if it could not."""
    body = event.get("body")
    if body is None:
        return None
    if not isinstance(body, str):
        return "the event's body must be a string (API Gateway sends the request body as text)"
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
    if event.get("version") != "2.0":
        return event
    context = event["requestContext"]
    stage = context.get("stage", "$default")
    path = context["http"]["path"]
    prefix = f"/{stage}"
    if stage == "$default" or not path.startswith(prefix + "/"):
        return event
    event = copy.deepcopy(event)
    event["requestContext"]["http"]["path"] = path[len(prefix) :]
    raw_path = event.get("rawPath")
    event["rawPath"] = (raw_path if isinstance(raw_path, str) else path).removeprefix(prefix)
    return event
