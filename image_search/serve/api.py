"""The FastAPI app: thin routes over ``SearchService``; domain errors become HTTP in one place."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from image_search import __version__
from image_search.config import get_settings
from image_search.errors import (
    ImageSearchError,
    ImageTooLargeError,
    IndexMismatchError,
    IndexNotReadyError,
    InvalidImageError,
    ModelLoadError,
    StorageUnavailableError,
    UnknownFolderError,
    UnknownKeyError,
)
from image_search.serve import page
from image_search.serve.limits import BodyLimit
from image_search.serve.schemas import (
    ErrorBody,
    FolderCount,
    Health,
    K,
    MinScore,
    SearchHit,
    SearchRequest,
    SimilarRequest,
)
from image_search.serve.service import SearchResult, SearchService, get_service

LOG = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[ImageSearchError], int] = {
    InvalidImageError: 400,
    UnknownFolderError: 404,
    UnknownKeyError: 404,
    ImageTooLargeError: 413,
    IndexNotReadyError: 503,
    IndexMismatchError: 503,
    StorageUnavailableError: 503,
    ModelLoadError: 503,
}
RETRY_AFTER_SECONDS = "5"
ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 413, 503)}

ServiceDep = Annotated[SearchService, Depends(get_service)]


def require_api_key(request: Request) -> None:
    """When IMAGE_SEARCH_API_KEYS is set, demand one of them as a Bearer token or x-api-key."""
    keys = get_settings().api_keys
    if not keys:
        return
    offered = request.headers.get("x-api-key", "")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        offered = offered or token.strip()
    # compare_digest against every key, so timing reveals neither which key nor how much matched.
    matches = [hmac.compare_digest(offered.encode(), key.encode()) for key in keys]
    if not offered or not any(matches):
        raise _Unauthorized()


class _Unauthorized(Exception):
    pass


def _send(result: SearchResult, response: Response) -> list[SearchHit]:
    folders = (
        "*" if result.folders is None else ",".join(quote(f, safe=" -_.") for f in result.folders)
    )
    response.headers["X-Image-Search-Folders"] = folders
    response.headers["X-Image-Search-Detected"] = "true" if result.detected else "false"
    response.headers["Server-Timing"] = ", ".join(
        f"{n};dur={ms}" for n, ms in result.timings.items()
    )
    return [SearchHit(**vars(hit)) for hit in result.hits]


def _routes() -> APIRouter:
    router = APIRouter(responses=ERRORS)  # type: ignore[arg-type]
    keyed = [Depends(require_api_key)]

    @router.post("/image_search/search", dependencies=keyed, response_model=list[SearchHit])
    def search(body: SearchRequest, service: ServiceDep, response: Response) -> list[SearchHit]:
        """Search by text; folders named in the query are detected when `folder` is empty."""
        result = service.search_text(
            body.query, k=body.k, folder=body.folder, min_score=body.min_score
        )
        return _send(result, response)

    @router.post(
        "/image_search/search_by_image", dependencies=keyed, response_model=list[SearchHit]
    )
    def search_by_image(
        service: ServiceDep,
        response: Response,
        file: Annotated[UploadFile, File(description="PNG, JPEG, GIF, BMP, TIFF or WEBP")],
        k_form: Annotated[K | None, Form(alias="k")] = None,
        k_query: Annotated[K | None, Query(alias="k")] = None,
        folder: Annotated[str, Form(max_length=256)] = "",
        min_score: Annotated[MinScore, Form()] = None,
    ) -> list[SearchHit]:
        """Search by an uploaded example image."""
        # One byte past the limit is enough for the service to refuse it.
        data = file.file.read(service.settings.max_upload_bytes + 1)
        k = k_form or k_query or 5
        return _send(service.search_image(data, k=k, folder=folder, min_score=min_score), response)

    @router.post("/image_search/similar", dependencies=keyed, response_model=list[SearchHit])
    def similar(body: SimilarRequest, service: ServiceDep, response: Response) -> list[SearchHit]:
        """Images similar to an indexed one, by its key or s3:// path."""
        key = body.key if body.key is not None else service.key_from_s3_path(body.s3_path or "")
        result = service.similar(key, k=body.k, folder=body.folder, min_score=body.min_score)
        return _send(result, response)

    @router.get("/image_search/folders", dependencies=keyed, response_model=list[FolderCount])
    def folders(service: ServiceDep) -> list[FolderCount]:
        """The indexed folders and how many images each holds."""
        return [FolderCount(folder=name, count=count) for name, count in service.folders()]

    @router.get("/health", response_model=Health)
    def health(service: ServiceDep) -> Health:
        """200 with the serving build when an index is loaded, 503 with the reason when not."""
        meta = service.current().metadata
        return Health(
            build_id=meta.build_id, count=meta.count, model=meta.model, created_at=meta.created_at
        )

    return router


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImageSearchError)
    def domain_error(_: Request, exc: ImageSearchError) -> JSONResponse:
        status = next((STATUS_BY_ERROR[c] for c in type(exc).__mro__ if c in STATUS_BY_ERROR), 500)
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
        if status >= 500:
            LOG.warning("%s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each 'input': a NaN or Infinity there (Python's json
        # accepts them in bodies) cannot be encoded, which turned a bad request into a 500.
        errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(_Unauthorized)
    def unauthorized(_: Request, __: _Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"detail": "missing or invalid API key (Authorization: Bearer <key> or x-api-key)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="image-search", version=__version__, summary="Text and image search over an S3 bucket"
    )
    _add_error_handlers(app)
    app.include_router(_routes(), prefix=settings.api_prefix)
    app.include_router(page.router(), prefix=settings.api_prefix)  # open: no API key
    app.add_middleware(BodyLimit, upload_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "x-api-key"],
            expose_headers=["X-Image-Search-Folders", "X-Image-Search-Detected", "Server-Timing"],
        )
    return app
