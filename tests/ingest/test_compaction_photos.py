"""Photo fields through compaction (issues 24 §3 and 25): a build that folds ingest's segments in
takes the photo fields of their adds from the segment (ingest read them from the bytes it
embedded), reads nothing of those images, and publishes what a build from scratch reads from the
whole files. Adds of a segment made without fields are read from their heads (a ranged GET)."""

from __future__ import annotations

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation, new_segment_id
from image_search.artefacts.manifest import ItemPhoto
from image_search.artefacts.segment_publish import publish_segment
from image_search.artefacts.segments import Segment
from image_search.build.plan import item_of
from image_search.model import images
from image_search.model.photo_fields import HEAD_BYTES
from image_search.storage import s3
from tests.ingest.conftest import Indexed
from tests.support.factories import camera_jpeg
from tests.support.recording import RecordingClient


def photos_of(indexed: Indexed) -> dict[str, ItemPhoto | None]:
    pointer = read_pointer(indexed.where)
    assert pointer is not None
    metadata, _ = load_vectors(indexed.where, pointer=pointer)
    return {item.key: item.photo for item in metadata.items}


def test_a_compaction_takes_the_fields_of_the_segments_adds_from_the_segment(
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
    assert recorder.reads_of("animals/camera.jpg") == []
    compacted = photos_of(indexed)
    assert compacted["animals/camera.jpg"] is not None
    assert compacted["animals/camera.jpg"].camera == "Canon EOS R5"

    assert indexed.build(full=True).published
    assert photos_of(indexed) == compacted


def test_the_adds_of_a_segment_made_without_fields_are_read_from_their_heads(
    indexed: Indexed,
) -> None:
    """A segment published before segment items carried photo fields: its adds' fields are read
    by ranged GET, as those of a build made without them."""
    photo = camera_jpeg(71, make="Canon", model="EOS R6")
    indexed.put("animals/camera.jpg", photo)
    found = s3.head(indexed.where.client, bucket=indexed.where.bucket, key="animals/camera.jpg")
    assert found is not None
    vectors = indexed.embedder.embed_images([images.decode(photo, max_pixels=10**8)])
    segment = Segment(
        segment_id=new_segment_id(),
        base_build_id=indexed.pointer().build_id,
        model=indexed.embedder.identity,
        dim=indexed.embedder.dim,
        items=[item_of(found[0])],  # no photo
        deletes=[],
    )
    publish_segment(indexed.where, segment, vectors)

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
    assert compacted["animals/camera.jpg"].camera == "Canon EOS R6"
