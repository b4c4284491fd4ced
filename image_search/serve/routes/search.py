"""The three searches (text, example image, similar to an indexed image): HTTP in, hits out.

Each answer also says, in headers, where it searched and what each stage cost, and notes what it
found in the request's log record.
"""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from image_search.observe.requests import note_search
from image_search.serve.bodies import validated
from image_search.serve.deps import CallerDep, RequireApiKey, ServiceDep
from image_search.serve.http_errors import documented
from image_search.serve.schemas import (
    Filters,
    HitPhoto,
    K,
    MinScore,
    Prefix,
    SearchHit,
    SearchRequest,
    SimilarRequest,
    photo_filter,
)
from image_search.serve.service import Hit, SearchResult

router = APIRouter(prefix="/image_search", dependencies=[RequireApiKey])

# The headers a search answers with (a browser on another origin may read them).
HEADERS = [
    "X-Image-Search-Folders",
    "X-Image-Search-Prefix",
    "X-Image-Search-Detected",
    "Server-Timing",
]
ANSWERS = documented(400, 401, 404, 409, 413, 503)
# A form field holding the filters' JSON: they are an object, and a form's fields are strings.
MAX_FILTERS_JSON = 2048


@router.post("/search", response_model=list[SearchHit], responses=ANSWERS)
def search(
    body: SearchRequest, service: ServiceDep, caller: CallerDep, response: Response
) -> list[SearchHit]:
    """Search by text; folders named in the query are detected when `folder` is empty."""
    result = service.search_text(
        body.query,
        k=body.k,
        folder=body.folder,
        prefix=body.prefix,
        chosen=photo_filter(body.filters),
        min_score=body.min_score,
        caller=caller,
    )
    return _send(result, response)


@router.post("/search_by_image", response_model=list[SearchHit], responses=ANSWERS)
def search_by_image(
    service: ServiceDep,
    response: Response,
    file: Annotated[
        UploadFile, File(description="PNG, JPEG, GIF, BMP, TIFF, WEBP, HEIC/HEIF or AVIF")
    ],
    k_form: Annotated[K | None, Form(alias="k")] = None,
    k_query: Annotated[K | None, Query(alias="k")] = None,
    folder: Annotated[str, Form(max_length=256)] = "",
    prefix: Annotated[Prefix, Form()] = "",
    min_score: Annotated[MinScore, Form()] = None,
    filters: Annotated[
        str | None,
        Form(
            max_length=MAX_FILTERS_JSON,
            description='the filters as JSON: {"camera": "…", "taken_after": "2024-06-01", …}',
        ),
    ] = None,
) -> list[SearchHit]:
    """Search by an uploaded example image."""
    chosen = photo_filter(None if filters is None else validated(Filters, filters, at="filters"))
    # One byte past the limit is enough for the service to refuse it.
    data = file.file.read(service.settings.max_upload_bytes + 1)
    k = k_form or k_query or 5
    result = service.search_image(
        data, k=k, folder=folder, prefix=prefix, chosen=chosen, min_score=min_score
    )
    return _send(result, response)


@router.post("/similar", response_model=list[SearchHit], responses=ANSWERS)
def similar(body: SimilarRequest, service: ServiceDep, response: Response) -> list[SearchHit]:
    """Images similar to an indexed one, by its key or s3:// path."""
    key = body.key if body.key is not None else service.key_from_s3_path(body.s3_path or "")
    result = service.similar(
        key,
        k=body.k,
        folder=body.folder,
        prefix=body.prefix,
        chosen=photo_filter(body.filters),
        min_score=body.min_score,
    )
    return _send(result, response)


def _send(result: SearchResult, response: Response) -> list[SearchHit]:
    """The hits as the API shapes them, with the search's headers and log record."""
    response.headers.update(headers(result))
    note(result)
    bucket = result.build.bucket
    return [search_hit(rank, hit, bucket=bucket) for rank, hit in enumerate(result.hits, 1)]


def note(result: SearchResult) -> None:
    """What the search found, in the request's log record."""
    note_search(
        results=len(result.hits),
        timings=dict(result.timings),
        cached=result.cached,
        index_size=result.build.count,
        index_created_at=result.build.created_at,
    )


def headers(result: SearchResult) -> dict[str, str]:
    searched = result.folders
    folders = "*" if searched is None else ",".join(quote(f, safe=" -_.") for f in searched)
    found = {"X-Image-Search-Folders": folders}
    if result.prefix:
        found["X-Image-Search-Prefix"] = quote(result.prefix, safe=" -_./")
    found["X-Image-Search-Detected"] = "true" if result.detected else "false"
    found["Server-Timing"] = ", ".join(f"{n};dur={ms}" for n, ms in result.timings.items())
    return found


def search_hit(rank: int, hit: Hit, *, bucket: str) -> SearchHit:
    return SearchHit(
        rank=rank,
        score=hit.score,
        # Both vectors have unit length, so their L2 distance follows from the cosine.
        distance=math.sqrt(max(0.0, 2.0 - 2.0 * hit.score)),
        folder=hit.folder,
        key=hit.key,
        s3_path=f"s3://{bucket}/{hit.key}",
        image_url=hit.url,
        # The domain photo read by attribute (its orientation is a property).
        photo=(
            None if hit.photo is None else HitPhoto.model_validate(hit.photo, from_attributes=True)
        ),
    )
