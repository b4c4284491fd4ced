"""Photo fields in the build, stage by stage on moto: read from the bytes the shard downloaded
(one GET per image), carried by the shard's result and checked like the rest of it, published
with the items; reused with the vector; read by a ranged GET of the first 64 KiB, once, for images
reused from a build made without them; malformed EXIF and failed reads never stop a build."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from image_search.artefacts.catalog import Catalog
from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import ItemPhoto, Metadata
from image_search.artefacts.photos import Photo, PhotoColumns
from image_search.build import photos, work
from image_search.build.merge_stage import merge_build
from image_search.build.plan_stage import plan_build
from image_search.build.shard_check import BadResultError, check_result
from image_search.build.shard_stage import embed_shard
from image_search.errors import NoImagesError
from image_search.model.photo_fields import HEAD_BYTES, PhotoFields, read_fields
from image_search.storage import s3
from tests.support.buckets import republish_without_photos
from tests.support.embedders import CountingEmbedder
from tests.support.factories import camera_jpeg, malformed_exif_jpegs, png_bytes
from tests.support.recording import RecordingClient
from tests.support.stages import build_here, embed_all

CANON = camera_jpeg(
    1, make="Canon", model="Canon EOS 5D", original="2024:06:01 14:03:22", offset="+02:00"
)
NIKON = camera_jpeg(
    2, size=(40, 60), make="NIKON", model="D750", original="2019:12:31 23:59:59", orientation=6
)
CAMERAS = {"trips/canon.jpg": CANON, "trips/nikon.jpg": NIKON, "trips/plain.png": png_bytes(3)}


def published(where: IndexLocation) -> Metadata:
    pointer = read_pointer(where)
    assert pointer is not None
    return load_vectors(where, pointer=pointer)[0]


def photo_of(metadata: Metadata, key: str) -> ItemPhoto | None:
    return next(item.photo for item in metadata.items if item.key == key)


def recording(where: IndexLocation, **kwargs: object) -> tuple[IndexLocation, RecordingClient]:
    client = RecordingClient(where.client, **kwargs)  # type: ignore[arg-type]
    return IndexLocation(client, where.bucket, where.prefix), client


def test_the_shard_reads_the_fields_from_the_bytes_it_downloaded(where, options, put) -> None:
    listing = put(CAMERAS)
    assert all(obj.modified is not None for obj in listing)  # LastModified, from the listing
    planned = plan_build(where, options, model=CountingEmbedder().identity)
    seen, client = recording(where)
    (shard,) = planned.shards
    result = embed_shard(
        seen, options, shard, plan_id=planned.plan.plan_id, embedder=CountingEmbedder()
    ).result
    assert result.fields is not None
    fields = dict(zip(result.rows.keys, result.fields.fields(), strict=True))
    assert fields == {key: read_fields(data) for key, data in CAMERAS.items()}
    assert fields["trips/nikon.jpg"].width == 60  # as shown: EXIF turns it a quarter
    # One plain GET per image, no second one for the fields.
    assert sorted(client.reads_of("trips/")) == sorted((key, None) for key in CAMERAS)


def test_a_build_publishes_each_image_s_fields(where, options, put) -> None:
    listing = {obj.key: obj for obj in put(CAMERAS)}
    assert build_here(where, options, CountingEmbedder()).published
    metadata = published(where)
    canon = photo_of(metadata, "trips/canon.jpg")
    assert canon is not None
    assert (canon.taken, canon.taken_offset, canon.taken_source) == (
        datetime(2024, 6, 1, 14, 3, 22),
        "+02:00",
        "exif",
    )
    assert (canon.camera, canon.width, canon.height, canon.orientation) == (
        "Canon EOS 5D",
        48,
        40,
        "landscape",
    )
    assert canon.modified == listing["trips/canon.jpg"].modified
    nikon = photo_of(metadata, "trips/nikon.jpg")
    # Stored 40 x 60, turned a quarter by EXIF: shown 60 x 40.
    assert nikon is not None and nikon.camera == "NIKON D750" and nikon.orientation == "landscape"
    # No EXIF date: dated by LastModified, flagged as such.
    plain = photo_of(metadata, "trips/plain.png")
    modified = listing["trips/plain.png"].modified
    assert plain is not None and modified is not None and plain.taken_source == "modified"
    assert plain.taken == modified.replace(tzinfo=None, microsecond=0) and plain.camera is None
    catalog = Catalog.from_metadata(metadata)
    assert catalog.photos is not None and catalog.photos.cameras == ("Canon EOS 5D", "NIKON D750")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's, on the cut EXIF block
def test_malformed_exif_never_stops_a_build(where, options, put) -> None:
    files = {f"odd/{name}": data for name, data in malformed_exif_jpegs().items()}
    put(files)
    report = build_here(where, options, CountingEmbedder())
    assert report.published and report.count == len(files) and report.skipped == []
    metadata = published(where)
    for item in metadata.items:
        assert item.photo is not None and item.photo.width and item.photo.height, item.key
        assert item.photo.taken_source == "modified", item.key  # no usable EXIF date
    assert photo_of(metadata, "odd/zero-date.jpg").camera == "Sony"  # type: ignore[union-attr]
    assert photo_of(metadata, "odd/huge-strings.jpg").camera is None  # type: ignore[union-attr]


def test_images_reused_from_a_build_without_fields_are_read_once_by_a_ranged_get(
    where, options, put
) -> None:
    put(CAMERAS)
    build_here(where, options, CountingEmbedder())
    republish_without_photos(where)
    put({"trips/new.jpg": camera_jpeg(9, make="Pixel", original="2025:01:02 03:04:05")})
    seen, client = recording(where)
    embedder = CountingEmbedder()
    report = build_here(seen, options, embedder)
    assert report.published and report.reused == 3 and embedder.images == 1
    reads = sorted(client.reads_of("trips/"))
    assert reads == [
        ("trips/canon.jpg", f"bytes=0-{HEAD_BYTES - 1}"),
        ("trips/new.jpg", None),  # the new image: downloaded and embedded
        ("trips/nikon.jpg", f"bytes=0-{HEAD_BYTES - 1}"),
        ("trips/plain.png", f"bytes=0-{HEAD_BYTES - 1}"),
    ]
    metadata = published(where)
    assert photo_of(metadata, "trips/canon.jpg").camera == "Canon EOS 5D"  # type: ignore[union-attr]
    assert photo_of(metadata, "trips/new.jpg").camera == "Pixel"  # type: ignore[union-attr]
    # Once: the next build reuses them with the vectors and reads nothing.
    seen, client = recording(where)
    assert not build_here(seen, options, CountingEmbedder()).published
    assert client.reads_of("trips/") == []


def test_a_failed_ranged_get_leaves_the_fields_empty_and_the_build_goes_on(
    where, options, put
) -> None:
    put(CAMERAS)
    build_here(where, options, CountingEmbedder())
    republish_without_photos(where)
    put({"trips/new.jpg": png_bytes(10)})
    seen, _ = recording(where, fail=lambda key, ranged: key == "trips/canon.jpg" and bool(ranged))
    assert build_here(seen, options, CountingEmbedder()).published
    metadata = published(where)
    assert photo_of(metadata, "trips/canon.jpg") is None  # unknown: the next publish tries again
    assert photo_of(metadata, "trips/nikon.jpg").camera == "NIKON D750"  # type: ignore[union-attr]
    assert Catalog.from_metadata(metadata).photos is not None


def test_a_head_replaced_since_the_listing_gives_no_fields(where, put) -> None:
    (obj,) = put({"trips/canon.jpg": CANON})
    assert photos.head_fields(where.client, where.bucket, obj) == read_fields(CANON)
    put({"trips/canon.jpg": NIKON})  # another version under the same key
    assert photos.head_fields(where.client, where.bucket, obj) is None
    gone = replace(obj, key="trips/gone.jpg")
    assert photos.head_fields(where.client, where.bucket, gone) is None


def test_a_result_s_fields_are_checked_like_the_rest_of_it(where, options, put) -> None:
    put(CAMERAS)
    embedder = CountingEmbedder()
    planned = plan_build(where, options, model=embedder.identity)
    embed_all(where, options, planned, embedder)
    (shard,) = planned.shards
    result = work.load_result(where, shard_id=shard.shard_id)
    assert result is not None and result.fields is not None
    check_result(where, shard, result, model=embedder.identity, dim=None)
    short = result.model_copy(update={"fields": work.FieldRows.of(result.fields.fields()[:2])})
    with pytest.raises(BadResultError, match="photo fields for 2 rows"):
        check_result(where, shard, short, model=embedder.identity, dim=None)
    document = result.model_dump(mode="json")
    for column, value in [("cameras", "x" * 5000), ("widths", 0), ("offsets", "+2h")]:
        hostile = {**document, "fields": {**document["fields"], column: [value] * 3}}
        with pytest.raises(ValueError):
            work.ShardResult.model_validate(hostile)


def test_a_result_refused_for_its_fields_leaves_its_images_for_the_next_build(
    where, options, put
) -> None:
    put(CAMERAS)
    embedder = CountingEmbedder()
    planned = plan_build(where, options, model=embedder.identity)
    embed_all(where, options, planned, embedder)
    (shard,) = planned.shards
    key = where.shard_result_key(shard.shard_id)
    document = work.load_result(where, shard_id=shard.shard_id)
    assert document is not None and document.fields is not None
    hostile = document.model_dump_json().replace('"Canon EOS 5D"', '"' + "C" * 5000 + '"')
    s3.put_bytes(where.client, bucket=where.bucket, key=key, data=hostile.encode(), content_type="")
    with pytest.raises(NoImagesError):  # its three images were all there was
        merge_build(where, options, planned.plan)
    # Deleted, so that no later run resumes it: the next build embeds its images again.
    assert s3.get_bytes_if_present(where.client, bucket=where.bucket, key=key) is None


def test_a_result_written_before_fields_gets_them_by_ranged_get(where, options, put) -> None:
    """A shard finished by a version before photo fields (an interrupted build, resumed after an
    upgrade) is used as it is; the merge reads its rows' fields from their heads."""
    put(CAMERAS)
    embedder = CountingEmbedder()
    planned = plan_build(where, options, model=embedder.identity)
    embed_all(where, options, planned, embedder)
    (shard,) = planned.shards
    key = where.shard_result_key(shard.shard_id)
    result = work.load_result(where, shard_id=shard.shard_id)
    assert result is not None
    older = result.model_copy(update={"fields": None})
    s3.put_bytes(
        where.client,
        bucket=where.bucket,
        key=key,
        data=older.model_dump_json().encode(),
        content_type="",
    )
    seen, client = recording(where)
    assert merge_build(seen, options, planned.plan).published
    assert {ranged for _, ranged in client.reads_of("trips/")} == {f"bytes=0-{HEAD_BYTES - 1}"}
    assert photo_of(published(where), "trips/canon.jpg").camera == "Canon EOS 5D"  # type: ignore[union-attr]


def test_a_reused_record_takes_size_and_last_modified_as_listed_now() -> None:
    """A copied bucket keeps ETags, not times: the EXIF fields are kept, LastModified (and the
    date of a photo dated by it) is the listing's."""
    before = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
    after = datetime.fromisoformat("2026-02-03T04:05:06+00:00")
    kept = PhotoColumns.of(
        [
            Photo.read(PhotoFields(camera="X", width=3, height=2), size=5, modified=before),
            Photo.read(PhotoFields(taken=datetime(2020, 1, 1)), size=6, modified=before),
        ]
    )
    now = [
        s3.S3Object("a/1.jpg", "a", "e", 50, after),
        s3.S3Object("a/2.jpg", "a", "e", 60, after),
    ]
    fresh = photos.refreshed(kept, now)
    first, second = fresh.photo(0), fresh.photo(1)
    assert (first.camera, first.size, first.modified) == ("X", 50, after)
    assert (first.taken, first.taken_source) == (datetime(2026, 2, 3, 4, 5, 6), "modified")
    assert (second.taken, second.taken_source, second.modified) == (
        datetime(2020, 1, 1),
        "exif",
        after,
    )


def test_reused_fields_come_from_photos_npy_and_a_damaged_one_is_read_again(
    where, options, put
) -> None:
    put(CAMERAS)
    build_here(where, options, CountingEmbedder())
    put({"trips/new.png": png_bytes(11)})
    # Reused from photos.npy: no image is read but the new one.
    seen, client = recording(where)
    assert build_here(seen, options, CountingEmbedder()).published
    assert client.reads_of("trips/") == [("trips/new.png", None)]
    assert photo_of(published(where), "trips/canon.jpg").camera == "Canon EOS 5D"  # type: ignore[union-attr]
    # photos.npy altered: refused by its checksum, the fields read again from the heads.
    pointer = read_pointer(where)
    assert pointer is not None and pointer.photos_key is not None
    s3.put_bytes(
        where.client,
        bucket=where.bucket,
        key=pointer.photos_key,
        data=b"\x93NUMPY",
        content_type="",
    )
    put({"trips/newer.png": png_bytes(12)})
    seen, client = recording(where)
    assert build_here(seen, options, CountingEmbedder()).published
    reads = dict(client.reads_of("trips/"))
    assert reads.pop("trips/newer.png") is None
    assert set(reads.values()) == {f"bytes=0-{HEAD_BYTES - 1}"} and len(reads) == 4
    assert photo_of(published(where), "trips/canon.jpg").camera == "Canon EOS 5D"  # type: ignore[union-attr]
