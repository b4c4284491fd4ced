"""Photo fields end to end: the real build (moto S3 over HTTP, a tiny CLIP) over camera JPEGs made
with Pillow's EXIF writer publishes each photo's date, time zone, camera and shown size in
``image_metadata.json`` and the catalog the service loads; an incremental build over a build
published without them reads them once, by ranged GETs of the first 64 KiB, and gives what a full
build reads from whole files."""

from __future__ import annotations

import json
from datetime import datetime

from image_search.artefacts.location import IndexLocation
from image_search.artefacts.photos import Photo
from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.model.photo_fields import HEAD_BYTES
from image_search.storage import s3
from tests.integration.test_build import build, current, populate
from tests.support.buckets import republish_without_photos
from tests.support.factories import camera_jpeg, encode, mpo_bytes, random_image
from tests.support.recording import RecordingClient

# Big enough that a whole file is more than the 64 KiB a ranged GET reads.
BIG = (900, 700)
LAYOUT = {
    "trips/canon.jpg": camera_jpeg(
        1,
        size=BIG,
        make="Canon",
        model="Canon EOS 5D",
        original="2024:06:01 14:03:22",
        offset="+02:00",
    ),
    "trips/nikon.jpg": camera_jpeg(
        2, size=(40, 60), make="NIKON", model="D750", original="1999:12:31 23:59:59"
    ),
    "trips/turned.jpg": camera_jpeg(3, size=BIG, make="Apple", model="iPhone 15", orientation=6),
    "trips/zero.jpg": camera_jpeg(4, original="0000:00:00 00:00:00", make="Sony"),
    "trips/IMG_0001.JPG": mpo_bytes(5),
    "home/plain.png": encode(random_image(6, size=(30, 30))),
}


def metadata_json(client: s3.S3Client, bucket: str) -> dict[str, dict[str, object]]:
    """``image_metadata.json`` as another tool reads it: key → the item's photo object."""
    where = IndexLocation(client, bucket, "index/")
    pointer = json.loads(s3.get_bytes(client, bucket=bucket, key=where.pointer_key))
    document = json.loads(s3.get_bytes(client, bucket=bucket, key=pointer["metadata_key"]))
    return {item["key"]: item.get("photo") for item in document["items"]}


def test_a_build_over_camera_photos_publishes_their_fields(
    client, bucket, embedder, tmp_path
) -> None:
    populate(client, bucket, LAYOUT)
    modified = {
        obj.key: obj.modified
        for obj in s3.list_images(client, bucket=bucket, folders=[], exclude_prefix="index/")
    }
    assert build(client, embedder).published

    photos = metadata_json(client, bucket)
    assert photos["trips/canon.jpg"] == {
        "taken": "2024-06-01T14:03:22",
        "taken_offset": "+02:00",
        "taken_source": "exif",
        "camera": "Canon EOS 5D",
        "width": 900,
        "height": 700,
        "orientation": "landscape",
        "modified": modified["trips/canon.jpg"].isoformat().replace("+00:00", "Z"),  # type: ignore[union-attr]
    }
    assert photos["trips/nikon.jpg"]["camera"] == "NIKON D750"
    assert photos["trips/nikon.jpg"]["orientation"] == "portrait"
    assert (photos["trips/turned.jpg"]["width"], photos["trips/turned.jpg"]["height"]) == (700, 900)
    # A date of zeros is no date: dated by LastModified, flagged; the camera is still read.
    assert photos["trips/zero.jpg"]["taken_source"] == "modified"
    assert photos["trips/zero.jpg"]["camera"] == "Sony"
    assert photos["home/plain.png"]["orientation"] == "square"
    assert "camera" not in photos["home/plain.png"]

    # The catalog the service maps carries the same fields, row for row.
    catalog = current(client, bucket, tmp_path).metadata
    assert catalog.photos is not None
    assert catalog.photos.cameras == ("Apple iPhone 15", "Canon EOS 5D", "NIKON D750", "Sony")
    canon = catalog.photos.photo(catalog.row("trips/canon.jpg"))  # type: ignore[arg-type]
    assert canon.taken == datetime(2024, 6, 1, 14, 3, 22) and canon.taken_offset == "+02:00"
    assert canon.size == len(LAYOUT["trips/canon.jpg"]) and canon.orientation == "landscape"


def test_an_incremental_build_over_a_build_without_fields_reads_each_head_once(
    client, bucket, embedder, tmp_path
) -> None:
    populate(client, bucket, LAYOUT)
    assert build(client, embedder).published
    where = IndexLocation(client, bucket, "index/")
    republish_without_photos(where)
    assert current(client, bucket, tmp_path).metadata.photos is None
    populate(client, bucket, {"trips/new.jpg": camera_jpeg(7, make="Pixel", model="8")})

    recorder = RecordingClient(client)
    report = run_build(get_settings(), client=recorder, embedder=embedder)
    assert report.published and report.reused == len(LAYOUT) and report.embedded == 1
    head = f"bytes=0-{HEAD_BYTES - 1}"
    reads = dict(recorder.reads_of("trips/") + recorder.reads_of("home/"))
    assert len(reads) == len(recorder.reads_of("trips/") + recorder.reads_of("home/"))  # once each
    assert reads == {**dict.fromkeys(LAYOUT, head), "trips/new.jpg": None}

    incremental = current(client, bucket, tmp_path).metadata
    assert incremental.photos is not None
    # What the heads gave is what a full build reads from the whole files.
    assert build(client, embedder, full=True).published
    full = current(client, bucket, tmp_path).metadata
    assert full.photos is not None
    for key in [*LAYOUT, "trips/new.jpg"]:
        found: Photo = incremental.photos.photo(incremental.row(key))  # type: ignore[arg-type]
        assert found == full.photos.photo(full.row(key)), key  # type: ignore[arg-type]
    assert found.camera == "Pixel 8"
