"""The FastAPI app: the resources' routers, the middleware, and errors become HTTP in
``http_errors``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from image_search import __version__
from image_search.config import LogSettings, get_settings
from image_search.observe.logs import json_lines
from image_search.observe.requests import RequestLog
from image_search.serve.http_errors import add_error_handlers
from image_search.serve.limits import BodyLimit
from image_search.serve.openapi import add_schemas
from image_search.serve.routes import (
    duplicates,
    embed,
    facets,
    folders,
    health,
    page,
    query,
    search,
)
from image_search.serve.schemas import EmbedRequest, QueryRequest
from image_search.serve.service import get_service

ROUTERS = (
    search.router,
    query.router,
    embed.router,
    folders.router,
    facets.router,
    duplicates.router,
    health.router,
    page.router,
)


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    """On a long-lived server (uvicorn runs the lifespan; Mangum on Lambda does not), load the
    model and the index as the port opens rather than at the first request, and check for new
    builds from a timer thread too, so an idle server stays current."""
    service = get_service()
    service.warm_in_background()
    stop = service.index.keep_fresh()
    try:
        yield
    finally:
        stop()


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="image-search",
        version=__version__,
        summary="Text and image search over an S3 bucket",
        lifespan=_lifespan,
    )
    add_error_handlers(app)
    add_schemas(app, [QueryRequest, EmbedRequest])
    for router in ROUTERS:
        app.include_router(router, prefix=settings.api_prefix)
    app.add_middleware(BodyLimit, upload_bytes=settings.max_upload_bytes)
    # Outermost: its line and metrics cover every answer, the limits' 413s included.
    app.add_middleware(RequestLog, structured=json_lines(LogSettings().log_format))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "x-api-key"],
            expose_headers=search.HEADERS,
        )
    return app
