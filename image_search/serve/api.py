"""The FastAPI app: thin routes over ``SearchService``; errors become HTTP in ``http_errors``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Response, UploadFile
from fastapi.middleware.cors import CORSMiddleware

from image_search import __version__
from image_search.config import LogSettings, get_settings
from image_search.observe.logs import json_lines
from image_search.observe.requests import RequestLog, note_search
from image_search.serve import page
from image_search.serve.auth import ApiKey
from image_search.serve.http_errors import add_error_handlers
from image_search.serve.limits import BodyLimit
from image_search.serve.schemas import (
    MAX_GROUPS,
    DuplicatesPage,
    ErrorBody,
    Folder,
    FolderCount,
    Health,
    K,
    MinScore,
    Prefix,
    SearchHit,
    SearchRequest,
    SimilarRequest,
)
from image_search.serve.service import SearchResult, SearchService, get_service


async def _service() -> SearchService:
    """The process's service. ``async`` so FastAPI calls it in the event loop: a plain function
    would cost a hop through its thread pool on every request (as ``auth`` explains)."""
    return get_service()


ServiceDep = Annotated[SearchService, Depends(_service)]
ParentFolder = Annotated[
    str, Query(max_length=1024, description='list the sub-folders of this one ("animals/")')
]
HEADERS = [
    "X-Image-Search-Folders",
    "X-Image-Search-Prefix",
    "X-Image-Search-Detected",
    "Server-Timing",
]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can really give, for its OpenAPI description."""
    return {status: {"model": ErrorBody} for status in statuses}


def _send(result: SearchResult, response: Response) -> list[SearchHit]:
    folders = (
        "*" if result.folders is None else ",".join(quote(f, safe=" -_.") for f in result.folders)
    )
    response.headers["X-Image-Search-Folders"] = folders
    if result.prefix:
        response.headers["X-Image-Search-Prefix"] = quote(result.prefix, safe=" -_./")
    response.headers["X-Image-Search-Detected"] = "true" if result.detected else "false"
    response.headers["Server-Timing"] = ", ".join(
        f"{n};dur={ms}" for n, ms in result.timings.items()
    )
    note_search(
        results=len(result.hits),
        timings=result.timings,
        cached=result.cached if result.kind == "text" else None,
        build=result.metadata,
    )
    return result.hits


def _routes() -> APIRouter:
    router = APIRouter()

    @router.post(
        "/image_search/search",
        dependencies=ApiKey,
        response_model=list[SearchHit],
        responses=errors(400, 401, 404, 413, 503),
    )
    def search(body: SearchRequest, service: ServiceDep, response: Response) -> list[SearchHit]:
        """Search by text; folders named in the query are detected when `folder` is empty."""
        result = service.search_text(
            body.query, k=body.k, folder=body.folder, prefix=body.prefix, min_score=body.min_score
        )
        return _send(result, response)

    @router.post(
        "/image_search/search_by_image",
        dependencies=ApiKey,
        response_model=list[SearchHit],
        responses=errors(400, 401, 404, 413, 503),
    )
    def search_by_image(
        service: ServiceDep,
        response: Response,
        file: Annotated[UploadFile, File(description="PNG, JPEG, GIF, BMP, TIFF or WEBP")],
        k_form: Annotated[K | None, Form(alias="k")] = None,
        k_query: Annotated[K | None, Query(alias="k")] = None,
        folder: Annotated[str, Form(max_length=256)] = "",
        prefix: Annotated[Prefix, Form()] = "",
        min_score: Annotated[MinScore, Form()] = None,
    ) -> list[SearchHit]:
        """Search by an uploaded example image."""
        # One byte past the limit is enough for the service to refuse it.
        data = file.file.read(service.settings.max_upload_bytes + 1)
        k = k_form or k_query or 5
        result = service.search_image(data, k=k, folder=folder, prefix=prefix, min_score=min_score)
        return _send(result, response)

    @router.post(
        "/image_search/similar",
        dependencies=ApiKey,
        response_model=list[SearchHit],
        responses=errors(400, 401, 404, 413, 503),
    )
    def similar(body: SimilarRequest, service: ServiceDep, response: Response) -> list[SearchHit]:
        """Images similar to an indexed one, by its key or s3:// path."""
        key = body.key if body.key is not None else service.key_from_s3_path(body.s3_path or "")
        result = service.similar(
            key, k=body.k, folder=body.folder, prefix=body.prefix, min_score=body.min_score
        )
        return _send(result, response)

    @router.get(
        "/image_search/folders",
        dependencies=ApiKey,
        response_model=list[FolderCount],
        responses=errors(401, 404, 503),
    )
    def folders(service: ServiceDep, parent: ParentFolder = "") -> list[FolderCount]:
        """The indexed top-level folders, or the sub-folders directly under `parent`, with
        how many images each holds."""
        return [FolderCount(folder=name, count=count) for name, count in service.folders(parent)]

    @router.get(
        "/image_search/duplicates",
        dependencies=ApiKey,
        response_model=DuplicatesPage,
        responses=errors(401, 404, 503),
    )
    def duplicates(
        service: ServiceDep,
        min_score: Annotated[MinScore, Query()] = None,
        folder: Annotated[Folder, Query()] = "",
        prefix: Annotated[Prefix, Query()] = "",
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_GROUPS)] = 20,
    ) -> DuplicatesPage:
        """Groups of near-identical images found by the build (cosine ≥ `min_score`, never below
        the build's own score), each with an image in `folder`/`prefix`; largest first."""
        return service.duplicates(
            min_score=min_score, folder=folder, prefix=prefix, offset=offset, limit=limit
        )

    @router.get("/health", response_model=Health, responses=errors(503))
    def health(service: ServiceDep) -> Health:
        """200 with the serving build when an index is loaded, 503 with the reason when not."""
        meta = service.current().metadata
        return Health(
            build_id=meta.build_id, count=meta.count, model=meta.model, created_at=meta.created_at
        )

    return router


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
    app.include_router(_routes(), prefix=settings.api_prefix)
    app.include_router(page.router(), prefix=settings.api_prefix)  # open: no API key
    app.add_middleware(BodyLimit, upload_bytes=settings.max_upload_bytes)
    # Outermost: its line and metrics cover every answer, the limits' 413s included.
    app.add_middleware(RequestLog, structured=json_lines(LogSettings().log_format))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "x-api-key"],
            expose_headers=HEADERS,
        )
    return app
