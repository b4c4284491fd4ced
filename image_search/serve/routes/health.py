"""Whether an index is served, and which: what load balancers and deploy checks ask."""

from __future__ import annotations

from fastapi import APIRouter

from image_search.serve.deps import ServiceDep
from image_search.serve.http_errors import documented
from image_search.serve.schemas import Health

router = APIRouter()  # open: no API key


@router.get("/health", response_model=Health, responses=documented(503))
def health(service: ServiceDep) -> Health:
    """200 with the serving build when an index is loaded (and why a newer one is not, if so),
    503 with the reason when none is."""
    meta = service.checked().metadata
    embedder = service.embedder
    return Health(
        build_id=meta.build_id,
        count=meta.count,
        segments=len(meta.segment_ids),
        model=meta.model,
        created_at=meta.created_at,
        runtime=embedder.runtime,
        precision=embedder.precision,
        image_tower=service.image_tower.state,
        problem=service.index.problem,
    )
