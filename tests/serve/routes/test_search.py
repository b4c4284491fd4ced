"""The search routes' shaping of the service's frozen result: headers and hits."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import pytest

from image_search.artefacts.photos import Photo
from image_search.serve.routes.search import headers, search_hit
from image_search.serve.service import Hit, SearchResult, ServedBuild

BUILD = ServedBuild("b1", 3, datetime(2026, 1, 1, tzinfo=UTC), "photos")


def result(**changes: object) -> SearchResult:
    fields: dict[str, object] = {
        "kind": "text",
        "hits": (Hit(key="café/a b.jpg", folder="café", score=0.5, url="https://x/a"),),
        "folders": ("café", "a,b"),
        "prefix": "café/2024 ",
        "detected": True,
        "cached": False,
        "timings": {"embed": 1.5, "search": 0.25, "urls": 0.1},
        "build": BUILD,
    }
    return SearchResult(**{**fields, **changes})  # type: ignore[arg-type]


def test_headers_quote_names_and_keep_the_stages_in_order() -> None:
    found = headers(result())
    assert found["X-Image-Search-Folders"] == "caf%C3%A9,a%2Cb"  # a comma in a name is quoted
    assert found["X-Image-Search-Prefix"] == "caf%C3%A9/2024 "
    assert found["X-Image-Search-Detected"] == "true"
    assert found["Server-Timing"] == "embed;dur=1.5, search;dur=0.25, urls;dur=0.1"


def test_every_folder_and_no_prefix() -> None:
    found = headers(result(folders=None, prefix="", detected=False))
    assert found["X-Image-Search-Folders"] == "*" and "X-Image-Search-Prefix" not in found
    assert found["X-Image-Search-Detected"] == "false"


def test_a_hit_gets_its_rank_path_and_distance() -> None:
    hit = search_hit(2, result().hits[0], bucket="photos")
    assert (hit.rank, hit.key, hit.folder) == (2, "café/a b.jpg", "café")
    assert hit.s3_path == "s3://photos/café/a b.jpg" and hit.image_url == "https://x/a"
    assert hit.distance == pytest.approx(math.sqrt(2 - 2 * 0.5))
    assert hit.photo is None  # a build made before photo fields


def test_a_hit_carries_the_photo_fields() -> None:
    photo = Photo(
        taken=datetime(2024, 6, 1, 23, 30),
        taken_offset="+09:00",
        taken_source="exif",
        camera="Canon EOS R5",
        width=3000,
        height=4000,
        size=123,
        modified=datetime(2024, 6, 2, tzinfo=UTC),
    )
    found = Hit(key="a.jpg", folder="a", score=0.5, url="u", photo=photo)
    shown = search_hit(1, found, bucket="photos").model_dump(mode="json")["photo"]
    assert shown == {
        "taken": "2024-06-01T23:30:00",
        "taken_offset": "+09:00",
        "taken_source": "exif",
        "camera": "Canon EOS R5",
        "width": 3000,
        "height": 4000,
        "orientation": "portrait",
        "size": 123,
        "modified": "2024-06-02T00:00:00Z",
    }


def test_the_result_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        result().kind = "image"  # type: ignore[misc]
