"""The build's work files as JSON documents: the plan, a shard's input and its result.

Objects are stored as columns (``Rows``), which keeps a million of them to a few tens of MB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, Field, NaiveDatetime, model_validator

from image_search.artefacts.manifest import MAX_CAMERA, MAX_SIDE, Pointer, Skipped
from image_search.artefacts.versions import Versioned
from image_search.model.photo_fields import MAX_TEXT, OFFSET, PhotoFields
from image_search.storage import s3
from image_search.storage.lease import LeaseRecord

PLAN_SCHEMA_VERSION = 1
# What a build of an older version says when a newer one wrote its work files.
NEWER_BUILD = (
    "a newer image-search wrote it: build with that version, or delete the work folder "
    "(<prefix>work/build/) once its build has ended"
)


class Rows(BaseModel):
    """Objects as columns: keys, ETags, sizes and LastModified times (empty in work files
    written before they were kept: unknown)."""

    keys: list[str] = []
    etags: list[str] = []
    sizes: list[int] = []
    modified: list[AwareDatetime | None] = []

    @model_validator(mode="after")
    def _same_lengths(self) -> Rows:
        if not len(self.keys) == len(self.etags) == len(self.sizes):
            raise ValueError("keys, etags and sizes differ in length")
        if self.modified and len(self.modified) != len(self.keys):
            raise ValueError("keys and modified times differ in length")
        return self

    @classmethod
    def of(cls, objects: Iterable[s3.S3Object]) -> Rows:
        listed = list(objects)
        modified = [o.modified for o in listed]
        return cls(
            keys=[o.key for o in listed],
            etags=[o.etag for o in listed],
            sizes=[o.size for o in listed],
            modified=modified if any(m is not None for m in modified) else [],
        )

    def objects(self) -> list[s3.S3Object]:
        modified = self.modified or [None] * len(self.keys)
        return [
            s3.S3Object(key, s3.folder_of(key), etag, size, when)
            for key, etag, size, when in zip(
                self.keys, self.etags, self.sizes, modified, strict=True
            )
        ]

    def __len__(self) -> int:
        return len(self.keys)


# A result is written by whoever may write the work folder: each field bounded as
# model/photo_fields.py reads it.
Camera = Annotated[str, Field(min_length=1, max_length=min(MAX_TEXT, MAX_CAMERA))]
Offset = Annotated[str, Field(pattern=OFFSET.pattern)]
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]


class FieldRows(BaseModel):
    """Photo fields as columns, one per row of a shard's result (model/photo_fields.py)."""

    taken: list[NaiveDatetime | None] = []
    offsets: list[Offset | None] = []
    cameras: list[Camera | None] = []
    widths: list[Side | None] = []
    heights: list[Side | None] = []

    @model_validator(mode="after")
    def _same_lengths(self) -> FieldRows:
        columns: tuple[Sequence[object], ...] = (
            self.taken,
            self.offsets,
            self.cameras,
            self.widths,
            self.heights,
        )
        if len({len(column) for column in columns}) > 1:
            raise ValueError("the photo field columns differ in length")
        return self

    @classmethod
    def of(cls, fields: Sequence[PhotoFields]) -> FieldRows:
        return cls(
            taken=[f.taken for f in fields],
            offsets=[f.taken_offset if f.taken is not None else None for f in fields],
            cameras=[f.camera for f in fields],
            widths=[f.width for f in fields],
            heights=[f.height for f in fields],
        )

    def fields(self) -> list[PhotoFields]:
        columns = zip(
            self.taken, self.offsets, self.cameras, self.widths, self.heights, strict=True
        )
        return [
            PhotoFields(
                taken=taken,
                taken_offset=offset if taken is not None else None,
                camera=camera,
                width=width,
                height=height,
            )
            for taken, offset, camera, width, height in columns
        ]

    def __len__(self) -> int:
        return len(self.taken)


class ShardRef(BaseModel):
    shard_id: str
    count: int


class HeldLease(BaseModel):
    """The build lease as the plan took it, for a merge in another process to renew and release
    (Step Functions: no process lives from the plan to the merge)."""

    record: LeaseRecord
    etag: str


class BuildPlan(Versioned):
    """What one build does: which rows of the published build it keeps, which shards it embeds."""

    FORMAT: ClassVar[int] = PLAN_SCHEMA_VERSION
    DOCUMENT: ClassVar[str] = "the build plan"
    HINT: ClassVar[str] = NEWER_BUILD

    schema_version: int = Field(default=PLAN_SCHEMA_VERSION, ge=1)
    plan_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model: str
    full: bool = False
    previous: Pointer | None = None  # the build read at the start (its items give the counts)
    pointer_etag: str | None = None  # current.json's ETag then: the publish is conditional on it
    reused: Rows = Rows()
    reused_rows: list[int] = []  # row of each reused object in the previous build's embeddings
    # The previous pointer's segments whose adds continue those rows, in order (compaction):
    # row N + i is the i-th add of these segments, N the previous build's count.
    folded: list[str] = []
    still_broken: list[Skipped] = []  # undecodable last time and unchanged: skipped again
    shards: list[ShardRef] = []
    lease: HeldLease | None = None

    @property
    def shard_salt(self) -> str:
        """What this plan's shard ids are salted with: ``--full`` finds no earlier results."""
        return self.plan_id if self.full else ""


class ShardInput(Versioned):
    DOCUMENT: ClassVar[str] = "a shard's input"
    HINT: ClassVar[str] = NEWER_BUILD

    shard_id: str
    model: str
    objects: Rows


class ShardResult(Versioned):
    DOCUMENT: ClassVar[str] = "a shard's result"
    HINT: ClassVar[str] = NEWER_BUILD

    shard_id: str
    model: str
    plan_id: str  # the plan whose run embedded it (a later plan may reuse it)
    vectors_key: str
    rows: Rows  # the embedded objects, in the vectors' row order
    # Their photo fields, row for row; None in results written before photo fields (the merge
    # then reads them from each object's head).
    fields: FieldRows | None = None
    skipped: list[Skipped] = []
    seconds: float = 0.0
