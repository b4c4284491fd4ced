"""``filters`` on every search route and ``GET /image_search/facets``, through HTTP against a
published flat build with photo fields: only matching photos come back, ranked as brute force
over the matching rows; hits carry the fields; bad filters are a 422 naming the field, a build
without photo fields a 409 saying to rebuild."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.support.factories import encode, random_image
from tests.support.photo_filters import matches
from tests.support.service import make_api, point_at_index
from tests.support.synthetic import publish_synthetic

PORTRAITS_2018 = {
    "taken_after": "2018-01-01",
    "taken_before": "2018-12-31",
    "orientation": "portrait",
}


@pytest.fixture(scope="module")
def old_bucket(s3_endpoint: str, tiny_model: Path) -> str:
    """A build published before photo fields existed."""
    bucket, _ = publish_synthetic("flat", model=tiny_model, folders={"alpha": 40}, photos=False)
    return bucket


@pytest.fixture
def api(synthetic, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    point_at_index(monkeypatch, bucket=synthetic("flat"), model=tiny_model, cache=tmp_path)
    return make_api()


def loaded():  # type: ignore[no-untyped-def]
    from image_search.serve.service import get_service

    return get_service().current()


def matching(asked: dict[str, object], *, within: str = "") -> np.ndarray:
    catalog = loaded().metadata
    photos = catalog.photos
    return np.array(
        [
            row
            for row in range(len(catalog))
            if catalog.key(row).startswith(within) and matches(photos.photo(row), asked)
        ],
        dtype=np.int64,
    )


def brute_force(rows: np.ndarray, vector: np.ndarray, k: int) -> list[str]:
    index, catalog = loaded().index, loaded().metadata
    scores = np.array([float(index.vector(int(row))[0] @ vector.ravel()) for row in rows])
    order = np.argsort(-scores, kind="stable")[:k]
    return [catalog.key(int(rows[i])) for i in order]


def keys(answer) -> list[str]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [hit["key"] for hit in (body["results"] if isinstance(body, dict) else body)]


def test_text_search_returns_the_top_k_of_the_matching_photos(api) -> None:  # type: ignore[no-untyped-def]
    from image_search.serve.service import get_service

    body = {"query": "a dog", "k": 10, "folder": "*", "filters": PORTRAITS_2018}
    answer = api.post("/image_search/search", json=body)
    vector = get_service().embedder.embed_texts(["a dog"])
    rows = matching(PORTRAITS_2018)
    assert 0 < len(rows) < 2000  # a selective filter
    assert keys(answer) == brute_force(rows, vector, 10)
    assert "filter;dur=" in answer.headers["server-timing"]


def test_hits_carry_the_photo_fields(api) -> None:  # type: ignore[no-untyped-def]
    body = {"query": "a dog", "k": 5, "folder": "*", "filters": {"camera": "nikon d850"}}
    hits = api.post("/image_search/search", json=body).json()
    catalog = loaded().metadata
    for hit in hits:
        photo = catalog.photos.photo(catalog.rows[hit["key"]])
        assert hit["photo"]["camera"] == "NIKON D850" == photo.camera
        assert hit["photo"]["width"] == photo.width
        assert hit["photo"]["orientation"] == photo.orientation
        assert hit["photo"]["taken_source"] == photo.taken_source
        assert hit["photo"]["size"] == 1
        taken = hit["photo"]["taken"]
        assert taken == (None if photo.taken is None else photo.taken.isoformat())


def test_similar_and_upload_and_query_take_filters_too(api) -> None:  # type: ignore[no-untyped-def]
    from image_search.model.images import decode
    from image_search.serve.service import get_service

    catalog, index = loaded().metadata, loaded().index
    asked = {"camera": "Canon EOS R5", "min_width": 3000}
    rows = matching(asked, within="beta/")
    seed = catalog.key(int(matching({}, within="beta/")[5]))
    similar = api.post(
        "/image_search/similar", json={"key": seed, "k": 8, "folder": "beta", "filters": asked}
    )
    others = rows[rows != catalog.rows[seed]]
    assert keys(similar) == brute_force(others, index.vector(catalog.rows[seed]), 8)

    upload = encode(random_image(3))
    by_image = api.post(
        "/image_search/search_by_image",
        files={"file": ("q.png", upload, "image/png")},
        data={"k": "8", "folder": "beta", "filters": json.dumps(asked)},
    )
    vector = get_service().embedder.embed_images([decode(upload, max_pixels=10**8)])
    assert keys(by_image) == brute_force(rows, vector, 8)

    query = api.post(
        "/image_search/query",
        json={"positive": [{"key": seed}], "k": 8, "folder": "beta", "filters": asked},
    )
    assert keys(query) == keys(similar)
    assert all(hit["photo"]["width"] >= 3000 for hit in query.json()["results"])


def test_cursors_page_through_the_matching_photos_and_belong_to_their_filters(api) -> None:  # type: ignore[no-untyped-def]
    from image_search.serve.service import get_service

    asked = {"orientation": "landscape", "taken_after": "2020-01-01"}
    body = {"positive": [{"text": "a beach"}], "k": 30, "filters": asked}
    walked: list[str] = []
    cursor = None
    for _ in range(3):
        answer = api.post("/image_search/query", json={**body, "cursor": cursor})
        walked += keys(answer)
        cursor = answer.json()["next_cursor"]
    vector = get_service().embedder.embed_texts(["a beach"])
    assert walked == brute_force(matching(asked), vector, 90)
    other = {**body, "cursor": cursor, "filters": {**asked, "orientation": "portrait"}}
    refused = api.post("/image_search/query", json=other)
    assert refused.status_code == 400
    assert "filters" in refused.json()["detail"]


def test_a_filter_nothing_matches_answers_no_results(api) -> None:  # type: ignore[no-untyped-def]
    body = {"query": "a dog", "folder": "*", "filters": {"camera": "Leica M6"}}
    assert keys(api.post("/image_search/search", json=body)) == []
    query = {"positive": [{"text": "a dog"}], "filters": {"taken_before": "1999-01-01"}}
    answer = api.post("/image_search/query", json=query)
    assert keys(answer) == [] and answer.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("filters", "field", "words"),
    [
        ({"taken_after": "yesterday"}, "taken_after", "2024-06-01"),
        ({"taken_after": "2024-06-01T10:00+02:00"}, "taken_after", "without a time zone"),
        ({"taken_before": "2024-02-30"}, "taken_before", "not a real date"),
        ({"orientation": "round"}, "orientation", "landscape"),
        ({"min_width": 0}, "min_width", "greater than or equal to 1"),
        ({"camera": ""}, "camera", "at least 1"),
        ({"colour": "red"}, "colour", "Extra inputs"),
        ({"taken_after": "2024-06-02", "taken_before": "2024-06-01"}, "", "no photo can match"),
    ],
)
def test_bad_filters_are_a_422_naming_the_field(api, filters, field: str, words: str) -> None:  # type: ignore[no-untyped-def]
    for route, body in [
        ("/image_search/search", {"query": "a dog", "filters": filters}),
        ("/image_search/similar", {"key": "alpha/img_000001.jpg", "filters": filters}),
        ("/image_search/query", {"positive": [{"text": "a dog"}], "filters": filters}),
    ]:
        answer = api.post(route, json=body)
        assert answer.status_code == 422, (route, answer.text)
        [error] = answer.json()["detail"]
        assert error["loc"][:2] == ["body", "filters"], error
        assert field in error["loc"] or not field
        assert words in error["msg"]
    form = api.post(
        "/image_search/search_by_image",
        files={"file": ("q.png", encode(random_image(1)), "image/png")},
        data={"filters": json.dumps(filters)},
    )
    assert form.status_code == 422 and words in form.text
    facets = api.get("/image_search/facets", params=filters)
    assert facets.status_code == 422 and words in facets.text


def test_filters_in_a_form_must_be_a_json_object(api) -> None:  # type: ignore[no-untyped-def]
    answer = api.post(
        "/image_search/search_by_image",
        files={"file": ("q.png", encode(random_image(1)), "image/png")},
        data={"filters": "camera=canon"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][:2] == ["body", "filters"]


def test_facets_count_cameras_and_years_in_the_scope(api) -> None:  # type: ignore[no-untyped-def]
    asked = {"orientation": "landscape", "camera": "canon eos r5", "taken_after": "2019-06-01"}
    answer = api.get("/image_search/facets", params={"prefix": "beta/sub/", **asked})
    assert answer.status_code == 200, answer.text
    counted = answer.json()
    catalog = loaded().metadata
    assert counted["build_id"] == catalog.build_id
    assert counted["count"] == len(matching(asked, within="beta/sub/"))
    photos = [catalog.photos.photo(int(r)) for r in matching({}, within="beta/sub/")]
    for_cameras = [p for p in photos if matches(p, {**asked, "camera": None})]
    cameras = Counter((p.camera or "").casefold() for p in for_cameras)
    assert counted["no_camera"] == cameras.pop("")
    assert {c["camera"].casefold(): c["count"] for c in counted["cameras"]} == cameras
    for_years = [p for p in photos if matches(p, {**asked, "taken_after": None})]
    years = Counter(p.taken.year for p in for_years if p.taken is not None)
    assert [(y["year"], y["count"]) for y in counted["years"]] == sorted(years.items())
    assert counted["no_date"] == sum(p.taken is None for p in for_years)


def test_facets_of_the_whole_index_and_of_an_unknown_folder(api) -> None:  # type: ignore[no-untyped-def]
    counted = api.get("/image_search/facets").json()
    assert counted["count"] == len(loaded().metadata)
    assert sum(c["count"] for c in counted["cameras"]) + counted["no_camera"] == counted["count"]
    # Two spellings of one camera are one entry, under one of its spellings.
    assert [c["camera"].casefold() for c in counted["cameras"]].count("canon eos r5") == 1
    assert api.get("/image_search/facets", params={"folder": "omega"}).status_code == 404


def test_a_build_without_photo_fields_says_rebuild(
    old_bucket: str, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at_index(monkeypatch, bucket=old_bucket, model=tiny_model, cache=tmp_path)
    api = make_api()
    plain = api.post("/image_search/search", json={"query": "a dog", "filters": {}})
    assert plain.status_code == 200
    assert all(hit["photo"] is None for hit in plain.json())
    for answer in [
        api.post("/image_search/search", json={"query": "a dog", "filters": {"min_width": 10}}),
        api.post(
            "/image_search/query", json={"positive": [{"text": "a"}], "filters": PORTRAITS_2018}
        ),
        api.get("/image_search/facets"),
    ]:
        assert answer.status_code == 409, answer.text
        assert "rebuild" in answer.json()["detail"]


def test_the_openapi_schema_describes_filters_and_facets(api) -> None:  # type: ignore[no-untyped-def]
    schema = api.get("/openapi.json").json()
    filters = schema["components"]["schemas"]["Filters"]
    assert set(filters["properties"]) == {
        "taken_after",
        "taken_before",
        "camera",
        "orientation",
        "min_width",
        "min_height",
    }
    for name in ("SearchRequest", "SimilarRequest", "QueryRequest"):
        assert "filters" in schema["components"]["schemas"][name]["properties"], name
    assert "photo" in schema["components"]["schemas"]["SearchHit"]["properties"]
    facets = schema["paths"]["/image_search/facets"]["get"]
    assert {p["name"] for p in facets["parameters"]} >= {"folder", "prefix", "camera"}
    assert "409" in facets["responses"]
