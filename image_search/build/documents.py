"""The build's work files as JSON documents: the plan, a shard's input and its result.

Objects are stored as columns (``Rows``), which keeps a million of them to a few tens of MB.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, Field, model_validator

from image_search.artefacts.manifest import Pointer, Skipped
from image_search.artefacts.versions import Versioned
from image_search.storage import s3
from image_search.storage.lease import LeaseRecord

PLAN_SCHEMA_VERSION = 1
# What a build of an older version says when a newer one wrote its work files.
NEWER_BUILD = (
    "a newer image-search wrote it: build with that version, or delete the work folder "
    "(<prefix>work/build/) once its build has ended"
)


class Rows(BaseModel):
    """Objects as columns: keys, ETags and sizes."""

    keys: list[str] = []
    etags: list[str] = []
    sizes: list[int] = []

    @model_validator(mode="after")
    def _same_lengths(self) -> Rows:
        if not len(self.keys) == len(self.etags) == len(self.sizes):
            raise ValueError("keys, etags and sizes differ in length")
        return self

    @classmethod
    def of(cls, objects: Iterable[s3.S3Object]) -> Rows:
        listed = list(objects)
        return cls(
            keys=[o.key for o in listed],
            etags=[o.etag for o in listed],
            sizes=[o.size for o in listed],
        )

    def objects(self) -> list[s3.S3Object]:
        return [
            s3.S3Object(key, s3.folder_of(key), etag, size)
            for key, etag, size in zip(self.keys, self.etags, self.sizes, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.keys)


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
    skipped: list[Skipped] = []
    seconds: float = 0.0
