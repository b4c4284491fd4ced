"""Combined queries (texts, indexed images and uploads, positive and negative) with cursors."""

from __future__ import annotations

from fastapi import APIRouter, Response

from image_search.errors import InvalidQueryError
from image_search.serve.bodies import QueryBody, decoded_image
from image_search.serve.combine import Part, Query
from image_search.serve.deps import CallerDep, QueryBodyDep, RequireApiKey, ServiceDep
from image_search.serve.http_errors import documented
from image_search.serve.openapi import either_body
from image_search.serve.routes.search import headers, note, search_hit
from image_search.serve.schemas import QueryAnswer, QueryPart, QueryRequest, photo_filter

router = APIRouter(prefix="/image_search", dependencies=[RequireApiKey])


@router.post(
    "/query",
    response_model=QueryAnswer,
    responses=documented(400, 401, 404, 409, 413, 422, 503),
    openapi_extra=either_body(QueryRequest, form_field="query"),
)
def query(
    body: QueryBodyDep, service: ServiceDep, caller: CallerDep, response: Response
) -> QueryAnswer:
    """Search by several texts, indexed images and uploads at once, some to move away from;
    every page of the results through `next_cursor`. JSON, or multipart (see docs/api.md)."""
    asked = body.query
    found = service.query(
        Query(
            positive=tuple(_part(part, body) for part in asked.positive),
            negative=tuple(_part(part, body) for part in asked.negative),
            folder=asked.folder,
            prefix=asked.prefix,
            filters=photo_filter(asked.filters),
            min_score=asked.min_score,
        ),
        k=asked.k,
        cursor=asked.cursor,
        caller=caller,
    )
    result = found.result
    response.headers.update(headers(result))
    note(result)
    bucket = result.build.bucket
    return QueryAnswer(
        results=[
            search_hit(found.offset + at, hit, bucket=bucket)
            for at, hit in enumerate(result.hits, 1)
        ],
        next_cursor=found.next_cursor,
        build_id=result.build.build_id,
    )


def _part(part: QueryPart, body: QueryBody) -> Part:
    image = None
    if part.image is not None:
        image = decoded_image(part.image)
    elif part.file is not None:
        if part.file not in body.files:
            raise InvalidQueryError(
                f"no uploaded file in a field named {part.file!r} (file parts are for multipart "
                "queries; in JSON, send the image's base64 as 'image')"
            )
        image = body.files[part.file]
    return Part(text=part.text, key=part.key, image=image, weight=part.weight)
