"""Every event in infra/events (what `sam local invoke -e` users replay) through the real handlers,
with infra/env.json's settings, against the moto S3 server and a published index."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.buckets import put
from tests.support.factories import LambdaContext, encode, random_image
from tests.support.handlers import entry_point
from tests.support.paths import ROOT

EVENT_FILES = sorted((ROOT / "infra/events").glob("*.json"))
ENV = json.loads((ROOT / "infra/env.json").read_text())
# Settings that must point at this machine's stand-ins rather than env.json's placeholders.
LOCAL = {"IMAGE_SEARCH_BUCKET", "IMAGE_SEARCH_MODEL", "AWS_ENDPOINT_URL_S3"}


def kind(event: dict[str, Any]) -> str:
    if event.get("version") == "2.0" and "requestContext" in event:
        return "http"
    if event.get("detail-type") == "Scheduled Event":
        return "schedule"
    raise AssertionError(f"unknown kind of event: {sorted(event)}")


def template_routes() -> set[str]:
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", lambda _loader, _tag, _node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=loader)  # noqa: S506
    events = template["Resources"]["SearchFunction"]["Properties"]["Events"].values()
    return {f"{e['Properties']['Method']} {e['Properties']['Path']}" for e in events}


def use_env(monkeypatch: pytest.MonkeyPatch, function: str) -> None:
    for name, value in ENV[function].items():
        if name not in LOCAL:
            monkeypatch.setenv(name, value)


def test_there_is_an_event_of_each_kind() -> None:
    kinds = [kind(json.loads(path.read_text())) for path in EVENT_FILES]
    assert {"http", "schedule"} <= set(kinds)
    uploads = [json.loads(p.read_text()) for p in EVENT_FILES if "search_by_image" in p.name]
    assert uploads and all(e["isBase64Encoded"] for e in uploads)


@pytest.mark.parametrize(
    "path",
    [p for p in EVENT_FILES if kind(json.loads(p.read_text())) == "http"],
    ids=lambda p: p.name,
)
def test_api_event_succeeds(path: Path, api_env, monkeypatch) -> None:
    from tests.support.service import make_api

    event = json.loads(path.read_text())
    assert event["routeKey"] in template_routes(), "the event's route is not in template.yaml"
    use_env(monkeypatch, "SearchFunction")
    make_api()  # fresh settings and service from this environment
    response = entry_point("search")(event, LambdaContext())
    body = response["body"]
    assert response["statusCode"] == 200, body
    payload = json.loads(base64.b64decode(body) if response.get("isBase64Encoded") else body)
    if event["rawPath"].startswith("/image_search/search"):
        assert payload and all(hit["image_url"].startswith("http") for hit in payload)
        assert len(payload) == 3  # the k the event asks for


@pytest.mark.parametrize(
    "path",
    [p for p in EVENT_FILES if kind(json.loads(p.read_text())) == "schedule"],
    ids=lambda p: p.name,
)
def test_scheduled_event_starts_a_build_that_publishes(
    path: Path, client, bucket, monkeypatch
) -> None:
    """The schedule starts the state machine with this event: plan, every shard, merge, each
    function with its env.json settings."""
    from image_search.config import get_settings
    from tests.support.state_machine import Execution, real_handlers

    for i in range(3):
        put(client, bucket, f"animals/{i}.png", encode(random_image(i)))
    handlers = real_handlers()

    def with_env(function: str):  # type: ignore[no-untyped-def]
        def call(payload: dict[str, Any], context: object) -> dict[str, Any]:
            with pytest.MonkeyPatch.context() as env:
                use_env(env, function)
                get_settings.cache_clear()
                try:
                    return handlers[function](payload, context)
                finally:
                    get_settings.cache_clear()

        return call

    execution = Execution(client, bucket, {name: with_env(name) for name in handlers})
    summary = execution.run(json.loads(path.read_text()))
    assert summary["state"] == "published" and summary["count"] == 3, summary
    assert json.loads(client.get_object(Bucket=bucket, Key="index/current.json")["Body"].read())
