"""S3's notifications as SQS delivers them, in both shapes, read into object events (no network).
The payloads are tests/events/sqs-*.json: Lambda's SQS event around bodies shaped as S3 and
EventBridge send them (keys URL-encoded)."""

from __future__ import annotations

import json

import pytest

from image_search.ingest.events import BadMessageError, ObjectEvent, is_stale, later, parse_body
from image_search.ingest.lambda_sqs import messages_of
from tests.support.paths import load_event


def bodies(name: str) -> list[str]:
    return [message.body for message in messages_of(load_event(name))]


def test_s3_notifications_decode_their_keys_and_skip_the_test_message() -> None:
    events = [event for body in bodies("sqs-s3-notifications.json") for event in parse_body(body)]
    assert events == [
        ObjectEvent("photos-bucket", "animals/new cat + été.png", False, "0066F3A1C2D4E5F601"),
        ObjectEvent("photos-bucket", "animals/0.png", True, "0066F3A1C2D4E5F70A"),
    ]


def test_eventbridge_events_read_the_same() -> None:
    events = [event for body in bodies("sqs-eventbridge.json") for event in parse_body(body)]
    assert events == [
        ObjectEvent("photos-bucket", "nature/new leaf.png", False, "0066F3A1C2D4E5F80B"),
        ObjectEvent("photos-bucket", "animals/1.png", True, "0066F3A1C2D4E5F90C"),
    ]


def test_a_slash_encoded_in_a_key_is_a_slash() -> None:
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Copy",
                    "s3": {"bucket": {"name": "b"}, "object": {"key": "a%2Fb%2Fc+d.jpg"}},
                }
            ]
        }
    )
    assert parse_body(body) == [ObjectEvent("b", "a/b/c d.jpg", False, None)]


def test_sns_wrapped_notifications_and_other_eventbridge_kinds() -> None:
    inner = bodies("sqs-s3-notifications.json")[1]
    wrapped = json.dumps({"Type": "Notification", "Message": inner, "TopicArn": "arn:t"})
    assert parse_body(wrapped) == parse_body(inner)
    other = json.loads(bodies("sqs-eventbridge.json")[0]) | {"detail-type": "Object Tags Added"}
    assert parse_body(json.dumps(other)) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        json.dumps({"hello": "world"}),
        json.dumps({"Records": "nope"}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {}}]}),
        json.dumps(
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": "b"}, "object": {"key": "%FF%FE.jpg"}},
                    }
                ]
            }
        ),
        json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
    ],
)
def test_what_is_no_notification_is_refused_by_name(body: str) -> None:
    with pytest.raises(BadMessageError):
        parse_body(body)


def test_a_sequencer_that_is_no_hex_counts_as_absent() -> None:
    record = json.loads(bodies("sqs-s3-notifications.json")[1])
    record["Records"][0]["s3"]["object"]["sequencer"] = "not-hex"
    assert parse_body(json.dumps(record))[0].sequencer is None


def test_sequencers_compare_as_s3_says_shorter_padded_on_the_right() -> None:
    assert is_stale("0A", applied="0B") and is_stale("0B", applied="0B")
    assert not is_stale("0C", applied="0B")
    assert is_stale("0A", applied="0A00") and not is_stale("0A01", applied="0A")
    assert not is_stale(None, applied="0B") and not is_stale("0A", applied=None)
    assert later("0a", "0B") == "0B" and later(None, "01") == "01" and later("02", None) == "02"
