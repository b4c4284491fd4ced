"""Logs and metrics as CloudWatch receives them: every line the functions print on stdout is
JSON; log lines carry the invocation's fields, metrics blobs are valid EMF from the catalogue."""

from __future__ import annotations

import json
import logging

import pytest

from image_search.config import get_settings
from image_search.observe.metrics import API_METRICS, BUILD_METRICS, NAMESPACE
from tests.support.buckets import put
from tests.support.factories import LambdaContext, encode, random_image
from tests.support.handlers import entry_point
from tests.support.paths import load_event
from tests.support.service import make_api

LOG_FIELDS = {"level", "message", "timestamp", "service", "name", "location"}
INVOCATION_FIELDS = {"function_request_id", "cold_start", "function_name", "function_arn"}


def printed(capsys) -> tuple[list[dict], list[dict]]:  # type: ignore[no-untyped-def]
    """(log lines, EMF blobs) printed on stdout; fails on any line that is not JSON."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [x for x in lines if "_aws" not in x], [x for x in lines if "_aws" in x]


def check_emf(blob: dict, catalogue: dict, *, service: str) -> dict[str, float]:
    """The blob's metrics by name, after checking it against the EMF specification."""
    directive = blob["_aws"]
    assert isinstance(directive["Timestamp"], int)
    [spec] = directive["CloudWatchMetrics"]
    assert spec["Namespace"] == NAMESPACE
    for dimension_set in spec["Dimensions"]:
        assert "service" in dimension_set
        assert all(isinstance(blob[name], str) and blob[name] for name in dimension_set)
    assert blob["service"] == service
    values = {}
    for metric in spec["Metrics"]:
        assert metric["Name"] in catalogue, metric
        assert metric["Unit"] == catalogue[metric["Name"]].value
        value = blob[metric["Name"]]  # a number, or a list of them (EMF allows both)
        [value] = value if isinstance(value, list) else [value]
        assert isinstance(value, int | float)
        values[metric["Name"]] = value
    return values


@pytest.fixture
def lambda_api(api_env, on_lambda):  # type: ignore[no-untyped-def]
    make_api()  # a fresh service for this environment
    return entry_point("search")


def test_api_lines_are_json_with_the_request_and_emf_per_request(lambda_api, capsys) -> None:
    search = load_event("http-search.json")
    assert lambda_api(search, LambdaContext("req-1"))["statusCode"] == 200
    assert lambda_api(search, LambdaContext("req-2"))["statusCode"] == 200
    upload = lambda_api(load_event("http-upload.json"), LambdaContext("req-3"))
    missing = load_event("http-search.json")
    missing["body"] = json.dumps({"query": "cat", "folder": "planets"})
    assert lambda_api(missing, LambdaContext("req-4"))["statusCode"] == 404
    logs, blobs = printed(capsys)

    requests = [line for line in logs if "route" in line]
    assert [line["function_request_id"] for line in requests] == [
        "req-1",
        "req-2",
        "req-3",
        "req-4",
    ]
    for line in requests:
        assert LOG_FIELDS | INVOCATION_FIELDS <= set(line)
        assert line["service"] == "image-search-api" and isinstance(line["cold_start"], bool)
        assert line["ms"] > 0
    assert requests[1]["cold_start"] is False
    text = requests[0]
    assert text["route"] == "POST /image_search/search" and text["kind"] == "text"
    assert text["status"] == 200 and text["results"] == 3
    assert set(text["timings"]) == {"embed", "search", "urls"}
    assert requests[1]["cached"] is True  # the same query again
    assert requests[2]["kind"] == "image" and requests[2]["status"] == upload["statusCode"]
    assert requests[3]["status"] == 404 and "results" not in requests[3]

    assert len(blobs) == 4  # one per request
    first, second, image, failed = (
        check_emf(b, API_METRICS, service="image-search-api") for b in blobs
    )
    assert blobs[0]["kind"] == "text" and blobs[2]["kind"] == "image"
    assert first["Searches"] == 1 and first["Results"] == 3 and first["EmptyResults"] == 0
    assert {"EmbedLatency", "SearchLatency", "UrlsLatency", "Latency"} <= set(first)
    assert first["TextCacheHits"] == 0 and second["TextCacheHits"] == 1
    assert first["IndexSize"] == get_settings_count() and first["IndexAge"] >= 0
    assert "DecodeLatency" in image and "TextCacheHits" not in image
    assert failed["ClientErrors"] == 1 and "Searches" not in failed


def get_settings_count() -> int:
    from image_search.serve.service import get_service

    return get_service().current().metadata.count


def test_build_logs_its_counts_and_sends_them_as_metrics(
    client, bucket, on_lambda, capsys, monkeypatch
) -> None:
    for i in range(3):
        put(client, bucket, f"animals/{i}.png", encode(random_image(i)))
    put(client, bucket, "animals/broken.jpg", b"not an image")
    # The state machine's three stages, as Step Functions calls them
    # (tests/integration/test_step_functions.py replays the definition itself).
    plan, embed_shard, merge = (entry_point(n) for n in ("plan", "embed_shard", "merge"))
    planned = plan({}, LambdaContext("build-1"))
    shards = json.loads(client.get_object(Bucket=bucket, Key=planned["items_key"])["Body"].read())
    for shard in shards:
        embed_shard({"plan_id": planned["plan_id"], **shard}, LambdaContext("build-1"))
    summary = merge({"plan_id": planned["plan_id"]}, LambdaContext("build-1"))
    assert summary["published"]
    logs, blobs = printed(capsys)

    assert all(line["service"] == "image-search-build" for line in logs)
    assert all(line["function_request_id"] == "build-1" for line in logs), logs
    [finished] = [line for line in logs if "build" in line]
    assert finished["message"] == "index build published"
    assert finished["build"]["embedded"] == 3 and finished["build"]["skipped"] == 1
    assert finished["build"]["added"] == summary["added"] > 0
    [blob] = blobs
    values = check_emf(blob, BUILD_METRICS, service="image-search-build")
    assert values["ImagesAdded"] == summary["added"] and values["ImagesSkipped"] == 1
    assert values["ImagesEmbedded"] == 3 and values["ImagesPerSecond"] > 0
    assert values["BuildsPublished"] == 1 and values["IndexSize"] == 3
    assert values["DuplicateGroups"] == summary["duplicate_groups"]


def test_json_locally_on_request(api_env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_SEARCH_LOG_FORMAT", "json")
    from image_search.observe import logs

    logs.configure(logs.API, log_format="json")
    try:
        make_api().get("/image_search/folders")
    finally:
        logging.getLogger().removeHandler(logs.powertools_logger(logs.API).registered_handler)
    lines, blobs = printed(capsys)
    [line] = [line for line in lines if line.get("route") == "GET /image_search/folders"]
    assert "function_request_id" not in line  # no Lambda, no invocation
    assert check_emf(blobs[-1], API_METRICS, service="image-search-api")["Requests"] == 1


def test_text_locally_by_default(api_env, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="image_search")
    make_api().post("/image_search/search", json={"query": "a cat", "k": 2})
    assert capsys.readouterr().out == ""  # no JSON, no EMF
    [record] = [r for r in caplog.records if r.name == "image_search.observe.requests"]
    assert record.getMessage().startswith("POST /image_search/search 200 in ")
    get_settings.cache_clear()
