"""``handler.search`` driven with API Gateway events as AWS sends them (tests/events/*.json)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.factories import LambdaContext
from tests.support.handlers import entry_point
from tests.support.paths import load_event


@pytest.fixture
def lambda_handler(api_env):  # type: ignore[no-untyped-def]
    from tests.support.service import make_api

    make_api()  # clears the cached settings and service for this environment
    return entry_point("search")


def body_of(response: dict) -> object:
    raw = response["body"]
    return json.loads(base64.b64decode(raw) if response.get("isBase64Encoded") else raw)


@pytest.mark.parametrize("name", ["rest-search.json", "http-search.json", "http-stage-search.json"])
def test_json_search(lambda_handler, name: str) -> None:
    response = lambda_handler(load_event(name), LambdaContext())
    assert response["statusCode"] == 200, response["body"]
    hits = body_of(response)
    assert len(hits) == 3 and {hit["folder"] for hit in hits} == {"nature"}
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["x-image-search-folders"] == "nature"


@pytest.mark.parametrize("name", ["rest-upload.json", "http-upload.json"])
def test_base64_multipart_upload_arrives_intact(lambda_handler, name: str) -> None:
    response = lambda_handler(load_event(name), LambdaContext())
    assert response["statusCode"] == 200, response["body"]
    hits = body_of(response)
    # The uploaded bytes are those of an indexed image: a corrupted upload could not score ≈ 1.
    assert len(hits) == 3 and hits[0]["key"] == "animals/dog 1.JPG"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_get_routes(lambda_handler) -> None:
    folders = lambda_handler(load_event("rest-folders.json"), LambdaContext())
    assert folders["statusCode"] == 200 and len(body_of(folders)) == 3
    health = lambda_handler(load_event("http-health.json"), LambdaContext())
    assert health["statusCode"] == 200 and body_of(health)["count"] == 12


def test_domain_errors_keep_their_status_through_lambda(lambda_handler) -> None:
    event = load_event("rest-search.json")
    event["body"] = json.dumps({"query": "cat", "folder": "planets"})
    response = lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 404 and "known folders" in body_of(response)["detail"]


@pytest.mark.parametrize(
    ("body", "is_base64", "detail"),
    [
        ("not base64 at all!", True, "not valid base64"),
        ('{"query": "cat \ud83d"}', False, "not valid UTF-8"),
    ],
    ids=["bad-base64", "lone-surrogate"],
)
def test_undecodable_bodies_are_400_not_a_crash(lambda_handler, body, is_base64, detail) -> None:
    event = load_event("http-search.json")
    event["body"], event["isBase64Encoded"] = body, is_base64
    response = lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 400 and detail in body_of(response)["detail"]
    assert lambda_handler(load_event("http-search.json"), LambdaContext())["statusCode"] == 200


# ---- invokes that are not API Gateway events ------------------------------------------------


def without_http(event: dict) -> dict:
    del event["requestContext"]["http"]
    return event


def with_object_body(event: dict) -> dict:
    event["body"] = {"query": "cat", "k": 3}  # a test console's JSON, not API Gateway's text
    return event


NOT_API_GATEWAY = {
    "empty": lambda: {},
    "schedule": lambda: load_event("schedule.json"),
    "v2-without-http": lambda: without_http(load_event("http-search.json")),
    "object-body": lambda: with_object_body(load_event("http-search.json")),
    "rest-object-body": lambda: with_object_body(load_event("rest-search.json")),
    "list": lambda: [load_event("http-search.json")],
    "string": lambda: "hello",
    "null": lambda: None,
}


@pytest.mark.parametrize("make", NOT_API_GATEWAY.values(), ids=NOT_API_GATEWAY)
def test_an_invoke_that_is_not_an_api_gateway_event_gets_a_400_answer(lambda_handler, make) -> None:
    response = lambda_handler(make(), LambdaContext())
    assert response["statusCode"] == 400, response
    assert response["headers"]["content-type"] == "application/json"
    assert body_of(response)["detail"]
    assert lambda_handler(load_event("http-search.json"), LambdaContext())["statusCode"] == 200


def mutations(event: object, path: tuple = ()):  # type: ignore[no-untyped-def]
    """(path, mutated copy) for every field of ``event``: removed, or replaced by a wrong type."""
    if not isinstance(event, dict):
        return
    for key, value in event.items():
        for replacement in ("<removed>", None, 7, ["x"], {"x": 1}):
            changed = json.loads(json.dumps(event))
            if replacement == "<removed>":
                del changed[key]
            else:
                changed[key] = replacement
            yield (*path, key, replacement), changed
        for inner_path, inner in mutations(value, ()):
            changed = json.loads(json.dumps(event))
            changed[key] = inner
            yield (*path, key, *inner_path), changed


@pytest.mark.parametrize("name", ["http-search.json", "rest-search.json", "http-upload.json"])
def test_no_damaged_event_makes_the_handler_raise_or_answer_5xx(lambda_handler, name) -> None:
    answers = []
    for path, event in mutations(load_event(name)):
        response = lambda_handler(event, LambdaContext())
        assert isinstance(response["statusCode"], int) and response["statusCode"] < 500, path
        answers.append(response["statusCode"])
    assert 400 in answers and 200 in answers  # both the refusals and the harmless changes
