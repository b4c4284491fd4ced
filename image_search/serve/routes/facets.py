"""Counts per camera and per year, as the page's camera picker and date range list them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from image_search.serve.deps import RequireApiKey, ServiceDep
from image_search.serve.http_errors import documented
from image_search.serve.schemas import CameraCount, FacetCounts, FacetsQuery, YearCount

router = APIRouter(prefix="/image_search", dependencies=[RequireApiKey])


@router.get("/facets", response_model=FacetCounts, responses=documented(401, 404, 409, 503))
def facets(service: ServiceDep, asked: Annotated[FacetsQuery, Query()]) -> FacetCounts:
    """How many images in the folder or prefix each camera and each year holds, with the
    filters (each facet without its own) applied."""
    build, counted = service.facets(
        folder=asked.folder, prefix=asked.prefix, chosen=asked.photo_filter()
    )
    return FacetCounts(
        build_id=build.build_id,
        count=counted.count,
        cameras=[CameraCount(camera=name, count=n) for name, n in counted.cameras],
        no_camera=counted.no_camera,
        years=[YearCount(year=year, count=n) for year, n in counted.years],
        no_date=counted.no_date,
    )
