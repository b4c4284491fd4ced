"""Downloading and decoding ahead of the model: batches in listing order, and every object that
fails reported once, with whether a later build should try it again."""

from __future__ import annotations

from dataclasses import replace

from image_search.build.fetch import decoded_batches
from tests.support.factories import png_bytes
from tests.support.stages import pictures


def run(where, options, listing, *, batch_size: int):  # type: ignore[no-untyped-def]
    return list(
        decoded_batches(
            listing,
            client=where.client,
            bucket=where.bucket,
            options=options,
            batch_size=batch_size,
        )
    )


def test_batches_come_in_listing_order_and_decoded(where, options, put) -> None:
    listing = put(pictures(11))[::-1]
    batches = run(where, options, listing, batch_size=4)
    assert [len(batch) for batch, _ in batches] == [4, 4, 3]
    assert [one.obj for batch, _ in batches for one in batch] == listing
    assert all(one.image.size == (8, 8) for batch, _ in batches for one in batch)
    assert all(failures == [] for _, failures in batches)


def test_each_failure_is_reported_once_with_its_cause(where, options, put) -> None:
    listing = put(
        {
            **pictures(3),
            "animals/text.png": b"a text file named like a picture",
            "animals/huge.png": png_bytes(1, size=(40, 30)),
        }
    )
    gone = next(obj for obj in listing if obj.key == "animals/img001.png")
    where.client.delete_object(Bucket=where.bucket, Key=gone.key)  # deleted since the listing

    batches = run(where, replace(options, max_image_pixels=1000), listing, batch_size=2)

    decoded = [one.obj.key for batch, _ in batches for one in batch]
    assert decoded == ["animals/img000.png", "animals/img002.png"]
    failures = {s.key: s for _, found in batches for s in found}
    assert set(failures) == {"animals/text.png", "animals/huge.png", gone.key}
    # Bytes that are no usable image wait for the object to change; a failed download is retried.
    assert failures["animals/text.png"].cause == "image"
    assert failures["animals/huge.png"].cause == "image"
    assert failures[gone.key].cause == "download"
    assert failures[gone.key].reason == "deleted during the build"
    etags = {obj.key: obj.etag for obj in listing}
    assert all(s.etag == etags[key] and s.reason for key, s in failures.items())


def test_nothing_to_fetch_yields_nothing(where, options) -> None:
    assert run(where, options, [], batch_size=4) == []
