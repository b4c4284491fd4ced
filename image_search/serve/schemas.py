"""Request and response bodies of the HTTP API (compatible with the product it replaces)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from image_search.serve.filters import Orientation, PhotoFilter, wall_clock

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


MAX_SIDE = 1_000_000  # pixels: more than any camera, less than anything that overflows


def _wall_clock(text: str) -> str:
    wall_clock(text)
    return text


WallClock = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=32),
    AfterValidator(_wall_clock),
]


class Filters(BaseModel):
    """What the photo itself must be (docs/api.md#filters); every field optional, all apply."""

    model_config = ConfigDict(extra="forbid")

    taken_after: WallClock | None = Field(
        default=None,
        description="taken on or after: a date (2024-06-01: from its start) or a time on the "
        "camera's clock (2024-06-01T14:30), no time zone",
        examples=["2024-06-01"],
    )
    taken_before: WallClock | None = Field(
        default=None,
        description="taken on or before: a date (2024-06-30: to its end) or a time on the "
        "camera's clock, no time zone",
        examples=["2024-06-30"],
    )
    camera: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description='"Make Model" as /facets lists it, compared case-folded ("canon eos r5")',
    )
    orientation: Orientation | None = Field(default=None, description="as the photo is shown")
    min_width: int | None = Field(default=None, ge=1, le=MAX_SIDE, description="pixels, as shown")
    min_height: int | None = Field(default=None, ge=1, le=MAX_SIDE, description="pixels, as shown")

    @model_validator(mode="after")
    def _a_range(self) -> Self:
        chosen = self.photo_filter()
        start, end = chosen.taken_from, chosen.taken_to
        if start is not None and end is not None and start > end:
            raise ValueError(
                "'taken_after' is after 'taken_before' (in whole seconds): no photo can match"
            )
        return self

    def photo_filter(self) -> PhotoFilter:
        return PhotoFilter.of(**self.model_dump(include=set(Filters.model_fields)))


def photo_filter(filters: Filters | None) -> PhotoFilter:
    """The filter a request asks for (none: every photo)."""
    return PhotoFilter() if filters is None else filters.photo_filter()


FiltersField = Annotated[
    Filters | None,
    Field(description="only photos like this (date taken, camera, orientation, size)"),
]


class SearchRequest(BaseModel):
    query: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)
    ]
    k: K = 5
    folder: Folder = Field(
        default="", description='empty: detect folders from the query; "*": every folder'
    )
    prefix: Prefix = ""
    filters: FiltersField = None
    min_score: MinScore = None


class SimilarRequest(BaseModel):
    key: str | None = Field(default=None, min_length=1, max_length=1024)
    s3_path: str | None = Field(default=None, min_length=1, max_length=1100)
    k: K = 5
    folder: Folder = ""
    prefix: Prefix = ""
    filters: FiltersField = None
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
    filters: FiltersField = None
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


# A camera's clock has no zone, so ``taken`` is an ISO 8601 local date-time; OpenAPI's
# "date-time" format is RFC 3339's, which requires one (clients validating answers refuse it).
LocalDateTime = Annotated[
    datetime,
    WithJsonSchema({"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$"}),
]


class HitPhoto(BaseModel):
    """What the build read from the photo (null fields: the file does not say)."""

    taken: LocalDateTime | None = Field(description="when, on the camera's clock (no time zone)")
    taken_offset: str | None = Field(description='the clock\'s offset from UTC ("+02:00") if known')
    taken_source: Literal["exif", "modified"] | None = Field(
        description="exif: the photo's own date; modified: no EXIF date, the object's "
        "LastModified stands in (UTC)"
    )
    camera: str | None = Field(description='"Make Model"')
    width: int | None = Field(description="pixels, as shown (after the EXIF rotation)")
    height: int | None
    orientation: Orientation | None
    size: int | None = Field(description="the object's bytes")
    modified: datetime | None = Field(description="the object's LastModified (UTC)")


class SearchHit(BaseModel):
    rank: int
    score: float = Field(description="cosine similarity, 1 = identical")
    distance: float = Field(description="L2 distance between unit vectors: sqrt(2 - 2*score)")
    folder: str
    key: str
    s3_path: str
    image_url: str = Field(description="presigned GET URL (or public URL)")
    photo: HitPhoto | None = Field(
        default=None, description="the photo's fields; null for builds made before they existed"
    )


class QueryAnswer(BaseModel):
    results: list[SearchHit] = Field(
        description="as /search returns them; ranks go on across pages"
    )
    next_cursor: str | None = Field(description="the next page's cursor; null on the last page")
    build_id: str = Field(description="the build that answered (cursors belong to it)")


class CameraCount(BaseModel):
    camera: str = Field(description="as `filters.camera` takes it")
    count: int


class YearCount(BaseModel):
    year: int
    count: int


class FacetCounts(BaseModel):
    build_id: str
    count: int = Field(description="images in the folder or prefix matching every filter")
    cameras: list[CameraCount] = Field(
        description="per camera, every filter but `camera` applied; most images first"
    )
    no_camera: int = Field(description="images of unknown camera, in the same count")
    years: list[YearCount] = Field(
        description="per year taken, every filter but the dates applied; ascending"
    )
    no_date: int = Field(description="images with no date at all, in the same count")


class FacetsQuery(Filters):
    """``GET /facets``'s query: the scope, and the filters as separate parameters."""

    folder: Folder = Field(default="", description='"" or "*": every folder')
    prefix: Prefix = ""


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
    count: int = Field(description="images served: the build's, with the segments applied")
    segments: int = Field(
        0, description="segments applied on the build: uploads and deletions since it was made"
    )
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
