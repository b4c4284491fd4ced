"""Bodies that come as JSON or as a multipart form: ``/query`` and ``/embed``.

FastAPI reads a route's body as one or the other; these routes take both (JSON with images in
base64, or a form with the images as files), so they read it here and validate it with the same
model either way. Sizes are bounded before this runs (``limits.py``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from image_search.errors import InvalidImageError, InvalidQueryError
from image_search.serve.schemas import MAX_PARTS, EmbedRequest, QueryRequest

M = TypeVar("M", bound=BaseModel)
# A browser's FileReader.readAsDataURL puts this before the base64.
DATA_URL_MARK = ";base64,"


@dataclass(frozen=True)
class Form:
    """A multipart form's text fields (name → values in order) and files (name → bytes)."""

    fields: Mapping[str, list[str]] = field(default_factory=dict)
    files: list[tuple[str, bytes]] = field(default_factory=list)


async def read_form(request: Request, *, max_file_bytes: int) -> Form | None:
    """The form of a multipart request, None for any other; each file read to at most one byte
    past ``max_file_bytes`` (enough for the service to refuse it)."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/"):
        return None
    form = await request.form(max_files=MAX_PARTS, max_fields=MAX_PARTS + 1)
    fields: dict[str, list[str]] = {}
    files: list[tuple[str, bytes]] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.append((name, await value.read(max_file_bytes + 1)))
        else:
            fields.setdefault(name, []).append(value)
    return Form(fields, files)


@dataclass(frozen=True)
class QueryBody:
    """A combined query as sent, and the files its ``file`` parts name (multipart only)."""

    query: QueryRequest
    files: Mapping[str, bytes]


@dataclass(frozen=True)
class EmbedBody:
    texts: list[str]
    images: list[bytes]


async def read_query(request: Request, *, max_file_bytes: int) -> QueryBody:
    """JSON, or a form with the JSON in its ``query`` field and the files it names."""
    form = await read_form(request, max_file_bytes=max_file_bytes)
    if form is None:
        return QueryBody(validated(QueryRequest, await request.body()), {})
    query = form.fields.get("query", [])
    if len(query) != 1 or set(form.fields) != {"query"}:
        raise InvalidQueryError(
            "a multipart query has one text field, 'query', holding the query's JSON; the "
            'files it names as {"file": "<field name>"} beside it'
        )
    files = dict(form.files)
    if len(files) < len(form.files):
        raise InvalidQueryError("two files share a field name: name each file apart")
    return QueryBody(validated(QueryRequest, query[0]), files)


async def read_embed(request: Request, *, max_file_bytes: int) -> EmbedBody:
    """JSON with base64 images, or a form of ``texts`` fields and image files (any names)."""
    form = await read_form(request, max_file_bytes=max_file_bytes)
    if form is None:
        body = validated(EmbedRequest, await request.body())
        return EmbedBody(body.texts, [decoded_image(image) for image in body.images])
    if set(form.fields) - {"texts"}:
        raise InvalidQueryError("a multipart embed request has 'texts' fields and image files")
    texts = form.fields.get("texts", [])
    if texts:
        texts = validated(EmbedRequest, {"texts": texts}).texts
    if not 1 <= len(texts) + len(form.files) <= MAX_PARTS:
        raise InvalidQueryError(f"give 1 to {MAX_PARTS} texts and images together")
    return EmbedBody(texts, [data for _, data in form.files])


def validated(model: type[M], data: str | bytes | dict[str, Any], *, at: str = "") -> M:
    """``data`` (JSON, or its fields) as ``model``; a 422 like FastAPI's own when it does not
    fit (its errors located under the body's field ``at`` when given)."""
    try:
        if isinstance(data, dict):
            return model.model_validate(data)
        return model.model_validate_json(data)
    except ValidationError as exc:
        where = ("body", at) if at else ("body",)
        errors: list[Any] = [
            {**error, "loc": (*where, *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from exc


def decoded_image(data: str) -> bytes:
    """An image sent as base64 (or as a data: URL), as bytes."""
    if data.startswith("data:") and DATA_URL_MARK in data:
        data = data.split(DATA_URL_MARK, 1)[1]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageError("an image is not valid base64") from exc
