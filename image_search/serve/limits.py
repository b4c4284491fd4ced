"""Request body size limits, enforced before a body is read into memory (pure ASGI middleware).

FastAPI reads a JSON body whole and Starlette spools a multipart upload to disk, both without a
bound, so a client could make the service hold gigabytes. A declared ``Content-Length`` over the
limit is refused before reading anything; a body that streams past it (chunked, or a lying
header) is cut off at the limit.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The largest valid JSON request is a 1,100-character s3_path written as \\u escapes (~13 KB).
MAX_JSON_BYTES = 64 * 1024
# Room for the multipart boundaries, part headers and the small form fields next to the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# The routes whose JSON bodies may carry images as base64 (a third larger than the bytes).
IMAGE_JSON_ROUTES = ("/image_search/query", "/image_search/embed")


def image_json_bytes(upload_bytes: int) -> int:
    """The JSON body cap of the routes that take base64 images: the upload limit's worth of
    base64, plus room for the texts, keys and options beside it."""
    return upload_bytes * 4 // 3 + MAX_JSON_BYTES


class BodyTooLargeError(HTTPException):
    """Raised from ``receive``; FastAPI lets HTTPExceptions through its body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class BodyLimit:
    """413 for bodies over ``upload_bytes`` (+ overhead) when multipart, over
    ``image_json_bytes(upload_bytes)`` for JSON to ``IMAGE_JSON_ROUTES``, ``json_bytes`` else."""

    def __init__(
        self, app: ASGIApp, *, upload_bytes: int, json_bytes: int = MAX_JSON_BYTES
    ) -> None:
        self.app = app
        self.upload_limit = upload_bytes + MULTIPART_OVERHEAD_BYTES
        self.json_limit = json_bytes
        self.image_json_limit = image_json_bytes(upload_bytes)

    def _limit(self, scope: Scope, content_type: bytes) -> int:
        if content_type.startswith(b"multipart/"):
            return self.upload_limit
        # endswith: the routes sit under IMAGE_SEARCH_API_PREFIX (and a stage on API Gateway).
        if str(scope["path"]).rstrip("/").endswith(IMAGE_JSON_ROUTES):
            return self.image_json_limit
        return self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").lower()
        limit = self._limit(scope, content_type)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(limit, send)
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLargeError:
            # Raised where no exception handler sits (outside a route's body parsing).
            if started:
                raise
            await _refuse(limit, send)


async def _refuse(limit: int, send: Send) -> None:
    body = json.dumps({"detail": BodyTooLargeError(limit).detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
