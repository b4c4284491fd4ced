"""Ingest end to end on moto: S3's real notifications into SQS, the consumer, segments published
with If-Match on the pointer (issue 25)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.ingest.conftest import BASE, Indexed
from tests.support.embedders import CountingEmbedder, pixel_vector
from tests.support.factories import encode, png_bytes, random_image


def test_a_put_is_published_as_a_segment_with_its_vector(indexed: Indexed) -> None:
    base = indexed.pointer()
    indexed.put("animals/new cat+1 é.png", png_bytes(40))
    report = indexed.ingest()
    assert (report.added, report.deleted, report.failed) == (1, 0, set())

    pointer = indexed.pointer()
    assert pointer.build_id == base.build_id  # the build stays, a segment goes on top
    ((segment, vectors),) = indexed.segments()
    assert [item.key for item in segment.items] == ["animals/new cat+1 é.png"]
    assert segment.deletes == [] and segment.base_build_id == base.build_id
    assert segment.applied[0].etag == segment.items[0].etag
    expected = pixel_vector(random_image(40))
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_a_delete_is_a_tombstone_and_an_overwrite_both(indexed: Indexed) -> None:
    indexed.delete("animals/0.png")
    indexed.put("animals/1.png", png_bytes(41))
    report = indexed.ingest()
    assert (report.added, report.deleted) == (1, 2)
    ((segment, vectors),) = indexed.segments()
    assert segment.deletes == ["animals/0.png", "animals/1.png"]
    assert [item.key for item in segment.items] == ["animals/1.png"]
    np.testing.assert_allclose(vectors, pixel_vector(random_image(41)), atol=1e-6)
    assert [a.etag is None for a in segment.applied] == [True, False]


def test_the_same_events_again_change_nothing(indexed: Indexed) -> None:
    indexed.put("nature/new.png", png_bytes(42))
    indexed.delete("animals/2.png")
    messages = indexed.receive()
    indexed.ingest()
    assert len(indexed.segments()) == 1
    for message in messages:  # delivered again, as at-least-once delivery may
        indexed.sqs.send_message(QueueUrl=indexed.queue_url, MessageBody=message["Body"])
    again = indexed.ingest()
    assert (again.added, again.deleted, again.unchanged, again.segment_id) == (0, 0, 2, None)
    assert len(indexed.segments()) == 1


def test_events_out_of_order_end_in_what_s3_holds(indexed: Indexed) -> None:
    indexed.put("nature/late.png", png_bytes(43))
    (put,) = indexed.receive()
    indexed.delete("nature/late.png")
    indexed.put("animals/0.png", png_bytes(44))
    indexed.put("animals/0.png", png_bytes(45))  # two overwrites: the second one counts
    indexed.ingest()  # the delete and the overwrites, then the put, late
    indexed.sqs.send_message(QueueUrl=indexed.queue_url, MessageBody=put["Body"])
    late = indexed.ingest()
    assert late.unchanged == 1 and late.segment_id is None
    keys = {item.key: vectors for segment, vectors in indexed.segments() for item in segment.items}
    assert "nature/late.png" not in keys
    np.testing.assert_allclose(keys["animals/0.png"], pixel_vector(random_image(45)), atol=1e-6)


def test_a_broken_image_is_skipped_with_a_reason_and_the_rest_published(indexed: Indexed) -> None:
    indexed.put("animals/broken.jpg", encode(random_image(46), "JPEG")[:200])
    indexed.put("animals/fine.png", png_bytes(47))
    indexed.put("animals/0.png", b"not an image any more")
    report = indexed.ingest()
    assert report.failed == set()  # nothing to deliver again: the bytes will not change by retrying
    ((segment, _),) = indexed.segments()
    assert [item.key for item in segment.items] == ["animals/fine.png"]
    assert {s.key for s in segment.skipped} == {"animals/broken.jpg", "animals/0.png"}
    assert all(s.cause == "image" and s.reason for s in segment.skipped)
    assert segment.deletes == ["animals/0.png"]  # its old picture is not served for the new bytes
    indexed.sqs.send_message(
        QueueUrl=indexed.queue_url, MessageBody=_event_for(indexed, "animals/broken.jpg")
    )
    again = indexed.ingest()
    assert again.unchanged == 1 and indexed.embedder.images == len(BASE) + 1  # not fetched again


def test_the_index_prefix_and_keys_outside_the_folders_are_ignored(
    make_indexed: Callable[..., Indexed],
) -> None:
    indexed = make_indexed(purge=False)  # the build's own files' events are in the queue
    indexed.put("root.png", png_bytes(48))
    indexed.put("animals/notes.txt", b"text")
    report = indexed.ingest()
    assert report.ignored >= 3 and report.failed == set()
    assert report.added + report.deleted == 0
    assert indexed.pointer().segments is None


def _event_for(indexed: Indexed, key: str) -> str:
    """An S3 notification for ``key`` as S3 sends it (the key URL-encoded)."""
    import json
    from urllib.parse import quote_plus

    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": indexed.where.bucket}, "object": {"key": quote_plus(key)}},
    }
    return json.dumps({"Records": [record]})


class Killed(BaseException):
    """The process dying where it is: nothing after it runs, no handler catches it."""


class DiesEmbedding(CountingEmbedder):
    def embed_images(self, images: Any) -> Any:
        raise Killed


class DiesDeleting:
    """An SQS client whose process dies after publishing, before the messages are deleted."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)

    def delete_message_batch(self, **kwargs: Any) -> Any:
        raise Killed


@pytest.mark.slow  # waits out two visibility timeouts
def test_an_ingest_killed_mid_batch_gives_the_same_index_when_delivered_again(
    make_indexed: Callable[..., Indexed],
) -> None:
    clean, killed = make_indexed(), make_indexed(visibility=1)
    for indexed in (clean, killed):
        indexed.put("animals/k1.png", png_bytes(70))
        indexed.put("nature/k2.png", png_bytes(71))
        indexed.delete("animals/0.png")
    clean.ingest()

    with pytest.raises(Killed):  # while embedding: nothing published, nothing deleted
        killed.consume(embedder=DiesEmbedding())
    assert killed.pointer().segments is None
    time.sleep(1.2)  # the messages' visibility timeout: SQS delivers them again
    with pytest.raises(Killed):  # after publishing, before deleting: all delivered again
        killed.consume(sqs=DiesDeleting(killed.sqs))
    time.sleep(1.2)
    again = killed.ingest()
    assert again.messages >= 3 and again.unchanged == 3 and again.segment_id is None

    def contents(indexed: Indexed) -> list[tuple[list[str], list[str], np.ndarray]]:
        return [
            ([i.key for i in segment.items], segment.deletes, vectors)
            for segment, vectors in indexed.segments()
        ]

    ((keys, deletes, vectors),) = contents(killed)
    ((clean_keys, clean_deletes, clean_vectors),) = contents(clean)
    assert (keys, deletes) == (clean_keys, clean_deletes)
    np.testing.assert_array_equal(vectors, clean_vectors)


def test_an_add_carries_the_photo_fields_its_header_gives(indexed: Indexed) -> None:
    from tests.support.factories import camera_jpeg

    indexed.put("animals/camera.jpg", camera_jpeg(72, make="Canon", model="EOS R5"))
    indexed.ingest()
    ((segment, _),) = indexed.segments()
    (item,) = segment.items
    assert item.photo is not None and item.photo.camera == "Canon EOS R5"
    assert item.photo.width and item.photo.height
