"""The indexed folders and their image counts, as the page's folder picker lists them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from image_search.serve.deps import RequireApiKey, ServiceDep
from image_search.serve.http_errors import documented
from image_search.serve.schemas import FolderCount

router = APIRouter(prefix="/image_search", dependencies=[RequireApiKey])

ParentFolder = Annotated[
    str, Query(max_length=1024, description='list the sub-folders of this one ("animals/")')
]


@router.get("/folders", response_model=list[FolderCount], responses=documented(401, 404, 503))
def folders(service: ServiceDep, parent: ParentFolder = "") -> list[FolderCount]:
    """The indexed top-level folders, or the sub-folders directly under `parent`, with
    how many images each holds."""
    return [FolderCount(folder=name, count=count) for name, count in service.folders(parent)]
