"""``handler.ingest`` as Lambda calls it: SQS batches of both recorded shapes (tests/events/),
the tiny CLIP as the function's model, and partial batch failures for what cannot be done."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from image_search.artefacts.loader import read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.segments import load_segment
from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.ingest import lambda_sqs
from image_search.model.factory import embedder_for
from image_search.storage import s3
from tests.support.factories import LambdaContext, png_bytes
from tests.support.handlers import entry_point
from tests.support.paths import load_event

PUT_BY_EVENTS = {"animals/new cat + été.png": 50, "nature/new leaf.png": 51}


def recorded(name: str, bucket: str) -> dict[str, Any]:
    """A recorded event with the test's bucket in place of the recording's."""
    return json.loads(json.dumps(load_event(name)).replace("photos-bucket", bucket))


@pytest.fixture
def built(bucket: str, client: s3.S3Client, tmp_path: Path) -> IndexLocation:
    for n in range(3):
        client.put_object(Bucket=bucket, Key=f"animals/{n}.png", Body=png_bytes(n))
    settings = get_settings()
    assert run_build(settings, client=client, embedder=embedder_for(settings)).published
    for key, seed in PUT_BY_EVENTS.items():
        client.put_object(Bucket=bucket, Key=key, Body=png_bytes(seed))
    client.delete_object(Bucket=bucket, Key="animals/0.png")
    client.delete_object(Bucket=bucket, Key="animals/1.png")
    lambda_sqs._context.cache_clear()  # the function's S3 client, made in this test's settings
    yield IndexLocation(client, bucket, settings.index_prefix)
    lambda_sqs._context.cache_clear()


def test_both_shapes_become_segments_and_nothing_fails(built: IndexLocation) -> None:
    ingest = entry_point("ingest")
    for name in ("sqs-s3-notifications.json", "sqs-eventbridge.json"):
        assert ingest(recorded(name, built.bucket), LambdaContext()) == {"batchItemFailures": []}
    pointer = read_pointer(built)
    assert pointer is not None and len(pointer.segments or []) == 2
    segments = [load_segment(built, ref)[0] for ref in pointer.segments or []]
    assert [[i.key for i in s.items] for s in segments] == [
        ["animals/new cat + été.png"],
        ["nature/new leaf.png"],
    ]
    assert [s.deletes for s in segments] == [["animals/0.png"], ["animals/1.png"]]
    assert segments[0].applied[0].sequencer == "0066F3A1C2D4E5F70A"  # the delete's, S3's order


def test_a_message_that_is_no_notification_fails_alone(built: IndexLocation) -> None:
    event = recorded("sqs-s3-notifications.json", built.bucket)
    event["Records"][0]["body"] = "{not json"
    failed_id = event["Records"][0]["messageId"]
    response = entry_point("ingest")(event, LambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": failed_id}]}
    pointer = read_pointer(built)
    assert pointer is not None and len(pointer.segments or []) == 1  # the others published


def test_when_s3_cannot_be_reached_every_message_comes_back(
    built: IndexLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = recorded("sqs-eventbridge.json", built.bucket)
    ingest = entry_point("ingest")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    lambda_sqs._context.cache_clear()
    response = ingest(event, LambdaContext())
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {
        r["messageId"] for r in event["Records"]
    }


def test_events_at_or_before_the_last_sequencer_applied_are_dropped_unseen(
    built: IndexLocation,
) -> None:
    event = recorded("sqs-s3-notifications.json", built.bucket)
    first, _ = lambda_sqs.handle(event)
    assert (first.added, first.deleted) == (1, 1)
    again, response = lambda_sqs.handle(event)  # redelivered: the same sequencers
    assert (again.stale, again.unchanged, again.segment_id) == (2, 0, None)
    assert response == {"batchItemFailures": []}
