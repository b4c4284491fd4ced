"""Request and response bodies of the HTTP API (compatible with the product it replaces)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_K = 100
MAX_QUERY_CHARS = 500
MAX_GROUPS = 50  # near-duplicate groups per page
# Parts of one combined query, or texts and images of one /embed request, counted together:
# seed 001 aggregates up to ten views of a product into one vector.
MAX_PARTS = 10

K = Annotated[int, Field(ge=1, le=MAX_K, description="number of results")]
Folder = Annotated[str, Field(max_length=256, description="search only this folder")]
Prefix = Annotated[
    str,
    Field(
        max_length=1024,
        description='search only keys starting with this, at any depth ("animals/cats/")',
    ),
]
MinScore = Annotated[float | None, Field(ge=-1.0, le=1.0, description="drop weaker results")]
QueryText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)
]
# Base64 of an image; its decoded size counts against the upload limit (413 past it).
Base64Image = Annotated[str, Field(min_length=1, description="an image's bytes in base64")]


class SearchRequest(BaseModel):
    query: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)
    ]
    k: K = 5
    folder: Folder = Field(
        default="", description='empty: detect folders from the query; "*": every folder'
    )
    prefix: Prefix = ""
    min_score: MinScore = None


class SimilarRequest(BaseModel):
    key: str | None = Field(default=None, min_length=1, max_length=1024)
    s3_path: str | None = Field(default=None, min_length=1, max_length=1100)
    k: K = 5
    folder: Folder = ""
    prefix: Prefix = ""
    min_score: MinScore = None

    @model_validator(mode="after")
    def _one_reference(self) -> Self:
        if (self.key is None) == (self.s3_path is None):
            raise ValueError("give exactly one of 'key' or 's3_path'")
        return self


class QueryPart(BaseModel):
    """One part of a combined query: exactly one of ``text``, ``key``, ``image`` or ``file``."""

    model_config = ConfigDict(extra="forbid")

    text: QueryText | None = None
    key: str | None = Field(
        default=None, min_length=1, max_length=1024, description="an indexed image's key"
    )
    image: Base64Image | None = None
    file: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="multipart only: the name of the form field holding an uploaded image",
    )
    weight: float = Field(
        default=1.0, gt=0, le=100, description="how much the part counts against the others"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [self.text, self.key, self.image, self.file]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of 'text', 'key', 'image' or 'file'")
        return self


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    positive: list[QueryPart] = Field(
        min_length=1, max_length=MAX_PARTS, description="what to look for"
    )
    negative: list[QueryPart] = Field(
        default=[], max_length=MAX_PARTS, description="what to move away from"
    )
    k: K = 10
    folder: Folder = Field(default="", description='"" or "*": every folder (no detection)')
    prefix: Prefix = ""
    min_score: MinScore = None
    cursor: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="the next_cursor of the previous page (send the same query with it)",
    )

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if len(self.positive) + len(self.negative) > MAX_PARTS:
            raise ValueError(f"at most {MAX_PARTS} parts, positive and negative together")
        return self


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[QueryText] = Field(default=[], max_length=MAX_PARTS)
    images: list[Base64Image] = Field(default=[], max_length=MAX_PARTS)

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if not 1 <= len(self.texts) + len(self.images) <= MAX_PARTS:
            raise ValueError(f"give 1 to {MAX_PARTS} texts and images together")
        return self


class Embeddings(BaseModel):
    model: str = Field(
        description="the model identity builds record: vectors of builds whose "
        "/health model is the same are comparable with these"
    )
    dim: int
    texts: list[list[float]] = Field(description="unit vectors, in the order of the texts")
    images: list[list[float]] = Field(description="unit vectors, in the order of the images")


class SearchHit(BaseModel):
    rank: int
    score: float = Field(description="cosine similarity, 1 = identical")
    distance: float = Field(description="L2 distance between unit vectors: sqrt(2 - 2*score)")
    folder: str
    key: str
    s3_path: str
    image_url: str = Field(description="presigned GET URL (or public URL)")


class QueryAnswer(BaseModel):
    results: list[SearchHit] = Field(
        description="as /search returns them; ranks go on across pages"
    )
    next_cursor: str | None = Field(description="the next page's cursor; null on the last page")
    build_id: str = Field(description="the build that answered (cursors belong to it)")


class FolderCount(BaseModel):
    folder: str = Field(
        description='"animals", or "animals/cats" below it; with "/" added, a search `prefix`'
    )
    count: int = Field(description="indexed images under it, at any depth")


class DuplicateImage(BaseModel):
    key: str
    folder: str
    s3_path: str
    image_url: str = Field(description="presigned GET URL (or public URL)")
    score: float = Field(description="its best cosine similarity to another image of the group")


class DuplicateGroup(BaseModel):
    size: int = Field(description="images in the group (at most 50 are listed)")
    score: float = Field(description="the best cosine similarity between two of its images")
    images: list[DuplicateImage] = Field(description="best matched first")


class DuplicatesPage(BaseModel):
    build_id: str
    min_score: float = Field(description="the score the groups were formed at")
    total: int = Field(description="groups matching, over every page")
    offset: int
    limit: int
    groups: list[DuplicateGroup] = Field(description="largest first, then best score")


class Health(BaseModel):
    status: str = "ok"
    build_id: str
    count: int
    model: str = Field(description="the model the build records (with #int8 when quantised)")
    created_at: datetime
    runtime: str = Field(description="onnx or torch")
    precision: str = Field(description="fp32 or int8")
    image_tower: Literal["loading", "ready"] = Field(
        description="text searches answer while the image model still loads after a cold start"
    )
    problem: str | None = Field(
        None,
        description="why the build current.json names is not the one served (damaged, newer "
        "than this code, S3 unreachable): the build above keeps serving meanwhile",
    )


class ErrorBody(BaseModel):
    detail: str
