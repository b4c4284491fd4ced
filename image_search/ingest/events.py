"""S3's change notifications as SQS delivers them, read into one shape.

Two shapes arrive: S3 event notifications (``{"Records": [{"s3": ...}]}``, sent by the bucket's
own notification configuration, possibly wrapped by SNS) and EventBridge events
(``{"detail-type": "Object Created" | "Object Deleted", "detail": ...}``, for a bucket whose
notifications belong to someone else). Both URL-encode the key (``+`` for a space, ``%2F`` for
``/``). S3's test message on configuration, and any other kind of event, carries no change.

An event is only a hint: ingest looks the key up (HEAD) and indexes what is there now. What an
event adds is its ``sequencer``, S3's per-key order, which lets a late event be dropped unseen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

# EventBridge's detail types for the object's bytes appearing or going away.
CREATED, DELETED = "Object Created", "Object Deleted"


class BadMessageError(ValueError):
    """A message that is no notification this code knows: it goes to the dead-letter queue."""


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    bucket: str
    key: str
    removed: bool  # the event says the object went away; a HEAD decides what it is now
    sequencer: str | None = None


def parse_body(body: str) -> list[ObjectEvent]:
    """The object events one SQS message body carries (none for a test message)."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise BadMessageError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadMessageError("not a JSON object")
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        return parse_body(document["Message"])  # S3 → SNS → SQS
    if document.get("Event") == "s3:TestEvent":
        return []
    if "Records" in document:
        return [_notification(record) for record in _list(document["Records"], "Records")]
    if document.get("source") == "aws.s3" and "detail-type" in document:
        return _eventbridge(document)
    raise BadMessageError("neither an S3 event notification nor an S3 EventBridge event")


def _notification(record: Any) -> ObjectEvent:
    name = _text(_field(record, "eventName"), "eventName")
    s3 = _field(record, "s3")
    obj = _field(s3, "object")
    return ObjectEvent(
        bucket=_text(_field(_field(s3, "bucket"), "name"), "bucket name"),
        key=_key(_field(obj, "key")),
        removed=name.startswith("ObjectRemoved:"),
        sequencer=_sequencer(obj.get("sequencer")),
    )


def _eventbridge(document: dict[str, Any]) -> list[ObjectEvent]:
    kind = document["detail-type"]
    if kind not in (CREATED, DELETED):
        return []  # restores, tagging, storage classes: the bytes did not change
    detail = _field(document, "detail")
    obj = _field(detail, "object")
    return [
        ObjectEvent(
            bucket=_text(_field(_field(detail, "bucket"), "name"), "bucket name"),
            key=_key(_field(obj, "key")),
            removed=kind == DELETED,
            sequencer=_sequencer(obj.get("sequencer")),
        )
    ]


def _field(parent: Any, name: str) -> Any:
    if not isinstance(parent, dict) or name not in parent:
        raise BadMessageError(f"no {name!r} where the notification has one")
    return parent[name]


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadMessageError(f"{name!r} is not a list")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadMessageError(f"{name} is not a non-empty string")
    return value


def _key(value: Any) -> str:
    try:
        key = unquote_plus(_text(value, "object key"), errors="strict")
    except UnicodeDecodeError as exc:
        raise BadMessageError("the object key is not URL-encoded UTF-8") from exc
    if not key or len(key.encode()) > 1024:  # S3's limit on a key's UTF-8 bytes
        raise BadMessageError("the object key is empty or longer than S3 allows")
    return key


def _sequencer(value: Any) -> str | None:
    """S3's sequencer, a hex string; anything else counts as absent."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    return value if all(c in "0123456789abcdefABCDEF" for c in value) else None


def _order(sequencer: str, width: int) -> str:
    return sequencer.upper().ljust(width, "0")


def later(a: str | None, b: str | None) -> str | None:
    """The later of two sequencers of one key (None: unknown)."""
    if a is None or b is None:
        return a or b
    return b if is_stale(a, applied=b) else a


def is_stale(sequencer: str | None, *, applied: str | None) -> bool:
    """An event at or before the last one applied for its key changes nothing. S3's rule: the
    greater hexadecimal sequencer is the later event, comparing strings of different lengths
    after padding the shorter with zeros on the right."""
    if sequencer is None or applied is None:
        return False
    width = max(len(sequencer), len(applied))
    return _order(sequencer, width) <= _order(applied, width)
