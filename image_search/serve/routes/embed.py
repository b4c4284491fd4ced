"""Vectors on request: texts and images in, the unit vectors search uses out."""

from __future__ import annotations

from fastapi import APIRouter

from image_search.serve.deps import CallerDep, EmbedBodyDep, RequireApiKey, ServiceDep
from image_search.serve.http_errors import documented
from image_search.serve.openapi import either_body
from image_search.serve.schemas import Embeddings, EmbedRequest

router = APIRouter(prefix="/image_search", dependencies=[RequireApiKey])


@router.post(
    "/embed",
    response_model=Embeddings,
    responses=documented(400, 401, 413, 422, 503),
    openapi_extra=either_body(EmbedRequest, form_field=None),
)
def embed(body: EmbedBodyDep, service: ServiceDep, caller: CallerDep) -> Embeddings:
    """The normalised vectors of texts and images, with the model they fit. JSON (images in
    base64) or multipart (`texts` fields and image files)."""
    found = service.embed(texts=body.texts, images=body.images, caller=caller)
    return Embeddings(
        model=found.model,
        dim=found.dim,
        texts=found.texts.tolist(),
        images=found.images.tolist(),
    )
