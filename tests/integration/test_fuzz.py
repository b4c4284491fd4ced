"""Property-based fuzzing of every operation in the app's own OpenAPI schema (schemathesis).

In-process over ASGI, against a real index in moto S3 and the tiny model. Valid and invalid
inputs (positive and negative generation) with a bounded number of examples per operation; each
response must not be a 5xx, must match its documented schema, and its status code must be one the
schema documents. Run alone with ``.venv/bin/python -m pytest tests/integration/test_fuzz.py``; set
``FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from image_search.config import get_settings
from image_search.serve.api import create_app
from tests.support.factories import encode, random_image
from tests.support.service import make_api

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
IMAGES = [encode(random_image(1)), encode(random_image(2), "JPEG"), encode(random_image(3), "GIF")]
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


class _CurrentApp:
    """The ASGI app under test, built by a fixture once the environment points at the test S3.

    pytest collects the schema's operations at import, before any fixture runs, so the schema is
    read from an app made for that alone and the requests go to this stand-in.
    """

    app: Any = None
    statuses: Counter[int] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


APP = _CurrentApp()


def _load_schema() -> Any:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IMAGE_SEARCH_BUCKET", "schema-only")  # the schema depends on no setting
        get_settings.cache_clear()
        document = create_app().openapi()
    get_settings.cache_clear()
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app, loaded.location = APP, "/openapi.json"
    loaded.config.generation.update(modes=["positive", "negative"], max_examples=EXAMPLES)
    return loaded


schema = _load_schema()


@pytest.fixture(autouse=True)
def app_under_test(api_env, request):  # type: ignore[no-untyped-def]
    api_env.setenv("IMAGE_SEARCH_MAX_UPLOAD_BYTES", "200000")
    APP.app, APP.statuses = make_api().app, Counter()
    yield
    APP.app = None
    if request.node.name.startswith("test_every_operation"):
        print(f"{request.node.name}: responses by status {dict(sorted(APP.statuses.items()))}")
        assert sum(APP.statuses.values()) > 0  # the fuzzer did send its requests


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure in CI reproduces locally
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_honours_its_schema(case: schemathesis.Case) -> None:
    body = case.body
    if case.path.endswith("search_by_image") and isinstance(body, dict) and "file" in body:
        # Random bytes are never an image; make every other upload a real one so the 200
        # answers are checked against the schema too.
        choice = len(repr(body)) % (2 * len(IMAGES))
        if choice < len(IMAGES):
            body["file"] = IMAGES[choice]
    case.call_and_validate(checks=CHECKS)


def test_the_schema_documents_every_route() -> None:
    assert {
        "/image_search/search",
        "/image_search/search_by_image",
        "/image_search/similar",
        "/image_search/folders",
        "/health",
    } <= set(schema.raw_schema["paths"])
