"""Every document the product writes under the index prefix carries a format version; a reader
refuses one newer than it knows, by name and with what to do, instead of reading half of it.
Documents written before versions existed have none and read as version 1."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from image_search.artefacts.duplicates import DuplicatesDoc, GroupDoc
from image_search.artefacts.manifest import CatalogHeader, Metadata, Pointer
from image_search.artefacts.segments import Segment
from image_search.artefacts.versions import Versioned
from image_search.build.documents import BuildPlan, Rows, ShardInput, ShardResult
from image_search.errors import NewerFormatError
from tests.artefacts.test_published_v1 import FIXTURES
from tests.support.factories import metadata_for

BUILD = "20261130T120000000000Z-aaaaaa"


def documents() -> dict[str, BaseModel]:
    metadata = metadata_for(["a/1.jpg", "b/2.jpg"]).model_copy(update={"build_id": BUILD})
    return {
        "current.json": Pointer(build_id=BUILD, index_key="i", metadata_key="m"),
        "catalog.json": CatalogHeader(**metadata.header().model_dump()),
        "image_metadata.json": metadata,
        "duplicates.json": DuplicatesDoc(
            build_id=BUILD, min_score=0.95, groups=[GroupDoc(keys=["a", "b"], edges=[(0, 1, 1.0)])]
        ),
        "segment.json": Segment(
            segment_id=BUILD, base_build_id=BUILD, model="m", dim=4, deletes=["a/1.jpg"]
        ),
        "the build plan": BuildPlan(plan_id="p", model="m"),
        "a shard's input": ShardInput(shard_id="s", model="m", objects=Rows()),
        "a shard's result": ShardResult(
            shard_id="s", model="m", plan_id="p", vectors_key="v", rows=Rows()
        ),
    }


@pytest.mark.parametrize("name", list(documents()))
def test_a_newer_format_is_refused_by_name_not_ignored(name: str) -> None:
    document = documents()[name]
    written = json.loads(document.model_dump_json())
    assert written["schema_version"] == 1
    written["schema_version"] = 2
    written["a_field_of_the_new_format"] = {"meaning": "unknown to this code"}
    with pytest.raises(NewerFormatError, match="has schema_version 2; this code reads up to 1"):
        type(document).model_validate_json(json.dumps(written))


@pytest.mark.parametrize("name", list(documents()))
def test_a_document_without_a_version_reads_as_version_1(name: str) -> None:
    document = documents()[name]
    written = json.loads(document.model_dump_json())
    del written["schema_version"]
    assert type(document).model_validate_json(json.dumps(written)) == document


def test_the_messages_say_which_build_and_what_to_do() -> None:
    written = json.loads(documents()["current.json"].model_dump_json()) | {"schema_version": 3}
    with pytest.raises(NewerFormatError) as raised:
        Pointer.model_validate_json(json.dumps(written))
    assert str(raised.value).startswith(f"current.json of build {BUILD} has schema_version 3")
    assert "upgrade image-search" in str(raised.value) and "rollback" in str(raised.value)
    written = json.loads(documents()["the build plan"].model_dump_json()) | {"schema_version": 2}
    with pytest.raises(NewerFormatError, match="delete the work folder"):
        BuildPlan.model_validate_json(json.dumps(written))


def test_every_versioned_document_is_covered_here() -> None:
    def subclasses(cls: type) -> set[type]:
        return {sub for direct in cls.__subclasses__() for sub in {direct, *subclasses(direct)}}

    covered = {type(document) for document in documents().values()}
    assert {cls for cls in subclasses(Versioned) if cls.__module__.startswith("image_search")} <= (
        covered | {cls for cls in covered for cls in cls.__mro__}
    )


def test_builds_published_before_versions_still_read() -> None:
    pointer = Pointer.model_validate_json((FIXTURES / "flat" / "current.json").read_bytes())
    assert pointer.build_id == BUILD and pointer.schema_version == 1
    metadata = FIXTURES / "flat" / "builds" / BUILD / "image_metadata.json"
    assert Metadata.model_validate_json(metadata.read_bytes()).count == 18
