"""The build's near-duplicate groups, a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from image_search.serve.deps import RequireApiKey, ServiceDep
from image_search.serve.duplicates import GroupPage, ImageGroup
from image_search.serve.http_errors import documented
from image_search.serve.schemas import (
    MAX_GROUPS,
    DuplicateGroup,
    DuplicateImage,
    DuplicatesPage,
    Folder,
    MinScore,
    Prefix,
)

router = APIRouter(prefix="/image_search", dependencies=[RequireApiKey])


@router.get("/duplicates", response_model=DuplicatesPage, responses=documented(401, 404, 503))
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
    page = service.duplicates(
        min_score=min_score, folder=folder, prefix=prefix, offset=offset, limit=limit
    )
    return duplicates_page(page)


def duplicates_page(page: GroupPage) -> DuplicatesPage:
    return DuplicatesPage(
        build_id=page.build_id,
        min_score=page.min_score,
        total=page.total,
        offset=page.offset,
        limit=page.limit,
        groups=[_group(group, bucket=page.bucket) for group in page.groups],
    )


def _group(group: ImageGroup, *, bucket: str) -> DuplicateGroup:
    images = [
        DuplicateImage(
            key=image.key,
            folder=image.folder,
            s3_path=f"s3://{bucket}/{image.key}",
            image_url=image.url,
            score=image.score,
        )
        for image in group.images
    ]
    return DuplicateGroup(size=group.size, score=group.score, images=images)
