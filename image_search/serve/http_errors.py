"""Domain errors become HTTP answers here, and only here: ``{"detail": "..."}`` with a status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from image_search.errors import (
    ConfigError,
    CursorExpiredError,
    DuplicatesUnavailableError,
    ImageSearchError,
    ImageTooLargeError,
    IndexMismatchError,
    IndexNotReadyError,
    InvalidCursorError,
    InvalidImageError,
    InvalidQueryError,
    ModelLoadError,
    PhotoFieldsMissingError,
    StorageUnavailableError,
    UnauthorizedError,
    UnknownFolderError,
    UnknownKeyError,
)
from image_search.serve.schemas import ErrorBody

LOG = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[ImageSearchError], int] = {
    InvalidImageError: 400,
    InvalidQueryError: 400,
    InvalidCursorError: 400,
    UnauthorizedError: 401,
    UnknownFolderError: 404,
    UnknownKeyError: 404,
    DuplicatesUnavailableError: 404,
    CursorExpiredError: 409,
    # The request is fine; the served build cannot answer it until it is rebuilt.
    PhotoFieldsMissingError: 409,
    ImageTooLargeError: 413,
    IndexNotReadyError: 503,
    IndexMismatchError: 503,
    StorageUnavailableError: 503,
    ModelLoadError: 503,
    # The deployment's own settings (a bucket that does not exist, no credentials): no retry
    # helps until someone fixes them, so no Retry-After either.
    ConfigError: 500,
}
RETRY_AFTER_SECONDS = "5"


def status_of(exc: ImageSearchError) -> int:
    return next((STATUS_BY_ERROR[c] for c in type(exc).__mro__ if c in STATUS_BY_ERROR), 500)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImageSearchError)
    def domain_error(_: Request, exc: ImageSearchError) -> JSONResponse:
        status = status_of(exc)
        headers = None
        if status == 503:
            headers = {"Retry-After": RETRY_AFTER_SECONDS}
        elif status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        if status >= 500:
            LOG.warning("%s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each 'input', and a NaN or Infinity there (Python's json
        # accepts them in bodies) cannot be encoded back to JSON.
        errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can really give, for its OpenAPI description. 422 is FastAPI's
    list of field errors (routes that read their own body add it; FastAPI adds it to others)."""
    return {
        status: VALIDATION_ERROR if status == 422 else {"model": ErrorBody} for status in statuses
    }


VALIDATION_ERROR = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}
