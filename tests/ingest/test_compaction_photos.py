"""Photo fields through compaction (issues 24 §3 and 25): a build that folds ingest's segments in
reads the photo fields of their adds from a ranged GET of each one's head (it does not take the
fields segment items carry for serving), and publishes what a build from scratch reads from the
whole files."""

from __future__ import annotations

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import ItemPhoto
from image_search.model.photo_fields import HEAD_BYTES
from tests.ingest.conftest import Indexed
from tests.support.factories import camera_jpeg
from tests.support.recording import RecordingClient


def photos_of(indexed: Indexed) -> dict[str, ItemPhoto | None]:
    pointer = read_pointer(indexed.where)
    assert pointer is not None
    metadata, _ = load_vectors(indexed.where, pointer=pointer)
    return {item.key: item.photo for item in metadata.items}


def test_a_compaction_reads_the_fields_of_the_segments_adds_by_ranged_get(
    indexed: Indexed,
) -> None:
    photo = camera_jpeg(70, make="Canon", model="EOS R5", original="2025:05:06 07:08:09")
    indexed.put("animals/camera.jpg", photo)
    indexed.ingest()
    assert indexed.pointer().segments

    recorder = RecordingClient(indexed.where.client)
    seen = IndexLocation(recorder, indexed.where.bucket, indexed.where.prefix)
    compacting = Indexed(seen, indexed.queue_url, indexed.sqs, indexed.embedder, indexed.settings)
    report = compacting.build()
    assert report.published and report.embedded == 0
    assert recorder.reads_of("animals/camera.jpg") == [
        ("animals/camera.jpg", f"bytes=0-{HEAD_BYTES - 1}")
    ]
    compacted = photos_of(indexed)
    assert compacted["animals/camera.jpg"] is not None
    assert compacted["animals/camera.jpg"].camera == "Canon EOS R5"

    assert indexed.build(full=True).published
    assert photos_of(indexed) == compacted
