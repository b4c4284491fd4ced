"""Format versions of the documents the product writes under the index prefix.

pydantic ignores fields it does not know, so without a version an older instance (or another
tool) would read a newer format as if it were its own and act on half of it. Every document
carries ``schema_version``; one without it is version 1 (everything published before versions).
A reader refuses a version above the one it knows, before looking at any other field, with a
message saying what to do. Raise ``FORMAT`` only for a change older readers would misread; a
field they may ignore needs none.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator

from image_search.errors import NewerFormatError

UPGRADE = (
    "upgrade image-search here, or point current.json back at a build this version published "
    "(python -m image_search rollback)"
)


class Versioned(BaseModel):
    """A document with a format version: ``FORMAT`` is the newest this code reads and writes."""

    FORMAT: ClassVar[int] = 1
    DOCUMENT: ClassVar[str] = "a document"  # what messages call it
    HINT: ClassVar[str] = UPGRADE

    # Written as the newest format this code knows: a class raising FORMAT declares the field
    # again with the new default (checked below, when the class is made).
    schema_version: int = Field(default=1, ge=1)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.model_fields["schema_version"].default != cls.FORMAT:
            raise TypeError(f"{cls.__name__} writes schema_version other than its FORMAT")

    @model_validator(mode="before")
    @classmethod
    def _readable(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        version = data.get("schema_version", 1)
        if isinstance(version, int) and version > cls.FORMAT:
            build = data.get("build_id")
            what = f"{cls.DOCUMENT} of build {build}" if isinstance(build, str) else cls.DOCUMENT
            raise NewerFormatError(
                f"{what} has schema_version {version}; this code reads up to {cls.FORMAT}: "
                f"{cls.HINT}"
            )
        return data
