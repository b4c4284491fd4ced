"""Photo fields as columns: every field round-trips through the records, the metadata document
and the published catalog files; columns taken and joined keep their cameras; a build without
photo fields has none; a damaged photos.npy is refused."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts import manifest
from image_search.artefacts.catalog import Catalog
from image_search.artefacts.integrity import DamagedCatalogError
from image_search.artefacts.manifest import CATALOG_FILE, PHOTOS_FILE, ItemPhoto, Metadata
from image_search.artefacts.photos import (
    NO_OFFSET,
    NO_TIME,
    PHOTO_DTYPE,
    Photo,
    PhotoColumns,
    offset_minutes,
)
from image_search.model.photo_fields import PhotoFields
from image_search.storage import checksum
from tests.support.factories import metadata_for

MODIFIED = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
CANON = Photo(
    taken=datetime(2024, 6, 1, 14, 3, 22),
    taken_offset="+02:00",
    taken_source="exif",
    camera="Canon EOS 5D",
    width=48,
    height=40,
    size=1234,
    modified=MODIFIED,
)
NIKON_WEST = Photo(
    taken=datetime(1999, 12, 31, 23, 59, 59),
    taken_offset="-05:30",
    taken_source="exif",
    camera="NIKON D750",
    width=30,
    height=60,
    size=99,
    modified=MODIFIED,
)
UNDATED = Photo(
    taken=datetime(2025, 3, 4, 5, 6, 7),
    taken_source="modified",
    width=10,
    height=10,
    size=5,
    modified=MODIFIED,
)
PHOTOS = [CANON, None, NIKON_WEST, UNDATED]


def test_photos_round_trip_through_the_columns() -> None:
    columns = PhotoColumns.of(PHOTOS)
    assert len(columns) == 4 and columns.array.dtype == PHOTO_DTYPE
    assert columns.cameras == ("Canon EOS 5D", "NIKON D750")
    assert [columns.photo(row) for row in range(4)] == [CANON, Photo(), NIKON_WEST, UNDATED]
    # The wall clock, stored as if UTC: the offset is beside it, never applied.
    assert int(columns.array["taken"][0]) == int(
        datetime(2024, 6, 1, 14, 3, 22, tzinfo=UTC).timestamp()
    )
    assert list(columns.array["offset"]) == [120, NO_OFFSET, -330, NO_OFFSET]
    assert list(columns.array["source"]) == [1, 0, 1, 2]
    assert int(columns.array["taken"][1]) == NO_TIME
    assert [p.orientation for p in (CANON, NIKON_WEST, UNDATED, Photo())] == [
        "landscape",
        "portrait",
        "square",
        None,
    ]


def test_a_photo_without_an_exif_date_is_dated_by_last_modified_and_flagged() -> None:
    fields = PhotoFields(camera="Pixel 8", width=4, height=3)
    photo = Photo.read(fields, size=7, modified=datetime(2025, 3, 4, 6, 6, 7, 999, tzinfo=UTC))
    assert photo.taken == datetime(2025, 3, 4, 6, 6, 7) and photo.taken_source == "modified"
    assert photo.taken_offset is None and photo.camera == "Pixel 8"
    # What a later build reuses is the header's fields alone: LastModified is read again.
    assert photo.fields() == fields
    dated = PhotoFields(taken=datetime(2020, 1, 1), taken_offset="+01:00")
    assert Photo.read(dated, size=1, modified=None).taken_source == "exif"
    assert Photo.read(dated, size=1, modified=None).fields() == dated
    assert Photo.read(PhotoFields(), size=None, modified=None) == Photo()


def test_take_and_concat_keep_each_row_with_its_camera() -> None:
    first = PhotoColumns.of([NIKON_WEST, UNDATED])
    second = PhotoColumns.of([CANON, None, NIKON_WEST])
    joined = PhotoColumns.concat([first, second])
    assert joined.cameras == ("Canon EOS 5D", "NIKON D750")
    assert [joined.photo(r) for r in range(5)] == [NIKON_WEST, UNDATED, CANON, Photo(), NIKON_WEST]
    taken = joined.take([4, 2, 1])
    assert [taken.photo(r) for r in range(3)] == [NIKON_WEST, CANON, UNDATED]
    assert len(PhotoColumns.concat([])) == 0 and len(joined.take([])) == 0


def test_the_metadata_document_carries_the_known_fields_only() -> None:
    document = json.loads(CANON.document().model_dump_json())
    assert document == {
        "taken": "2024-06-01T14:03:22",
        "taken_offset": "+02:00",
        "taken_source": "exif",
        "camera": "Canon EOS 5D",
        "width": 48,
        "height": 40,
        "orientation": "landscape",
        "modified": "2025-03-04T05:06:07Z",
    }
    assert json.loads(Photo().document().model_dump_json()) == {}
    for photo in (CANON, NIKON_WEST, UNDATED, Photo()):
        parsed = ItemPhoto.model_validate_json(photo.document().model_dump_json())
        assert Photo.of_document(parsed, size=photo.size) == photo


@pytest.mark.parametrize(
    "bad",
    [
        {"taken": "2024-06-01T14:03:22+02:00"},  # the wall clock carries no zone
        {"modified": "2024-06-01T14:03:22"},  # LastModified is an instant
        {"taken_offset": "2 hours"},
        {"camera": "x" * 1000},
        {"width": 0},
        {"height": -3},
        {"taken_source": "guess"},
    ],
)
def test_a_photo_document_from_s3_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ItemPhoto.model_validate(bad)


def test_a_date_without_its_source_is_no_date() -> None:
    photo = Photo.of_document(ItemPhoto(taken=datetime(2020, 1, 1)), size=1)
    assert photo.taken is None and photo.taken_source is None


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("+02:00", 120), ("-05:30", -330), ("+00:00", 0), (None, NO_OFFSET), ("+99:00", NO_OFFSET)],
)
def test_offsets(text: str | None, minutes: int) -> None:
    assert offset_minutes(text) == minutes


def with_photos(keys: list[str], photos: list[Photo | None]) -> Metadata:
    metadata = metadata_for(keys, sorted_by="key")
    for item, photo in zip(metadata.items, photos, strict=True):
        item.photo = None if photo is None else photo.document()
    return metadata


def publish(folder: Path, metadata: Metadata) -> Path:
    for name, data in Catalog.from_metadata(metadata).files().items():
        (folder / name).write_bytes(data)
    return folder


KEYS = ["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg"]


def test_the_published_catalog_maps_the_photos_and_checks_them(tmp_path: Path) -> None:
    metadata = with_photos(KEYS, PHOTOS)
    folder = publish(tmp_path, metadata)
    header = json.loads((folder / CATALOG_FILE).read_bytes())
    assert header["cameras"] == ["Canon EOS 5D", "NIKON D750"]
    assert header["checksums"][PHOTOS_FILE] == checksum.of_file(folder / PHOTOS_FILE)
    catalog = Catalog.open(folder)
    assert catalog.photos is not None and isinstance(catalog.photos.array, np.memmap)
    # The sizes are the items' own (metadata_for makes row i i bytes long).
    expected = [
        replace(CANON, size=None),
        Photo(),
        replace(NIKON_WEST, size=2),
        replace(UNDATED, size=3),
    ]
    assert [catalog.photos.photo(row) for row in range(4)] == expected
    assert Catalog.from_metadata(metadata).photos is not None


def test_a_build_without_photo_fields_has_none(tmp_path: Path) -> None:
    metadata = metadata_for(KEYS, sorted_by="key")
    assert Catalog.from_metadata(metadata).photos is None
    folder = publish(tmp_path, metadata)
    assert not (folder / PHOTOS_FILE).exists()
    assert "cameras" not in json.loads((folder / CATALOG_FILE).read_bytes())
    assert Catalog.open(folder).photos is None


def records(folder: Path) -> np.ndarray:
    return np.load(folder / PHOTOS_FILE).copy()


def save(folder: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    (folder / PHOTOS_FILE).write_bytes(buffer.getvalue())


def damaged_camera(array: np.ndarray) -> np.ndarray:
    array["camera"][0] = 3
    return array


def damaged_source(array: np.ndarray) -> np.ndarray:
    array["source"][1] = 9
    return array


def damaged_offset(array: np.ndarray) -> np.ndarray:
    array["offset"][0] = 2000
    return array


def damaged_time(array: np.ndarray) -> np.ndarray:
    array["taken"][2] = np.iinfo(np.int64).max
    return array


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (damaged_camera, "names a camera"),
        (damaged_source, "date source"),
        (damaged_offset, "offset out of range"),
        (damaged_time, "taken time out of range"),
        (lambda array: array[:3], "not 4 photo records"),
        (lambda array: array["taken"], "not 4 photo records"),
    ],
)
def test_a_damaged_photos_file_is_refused(tmp_path: Path, change: object, reason: str) -> None:
    folder = publish(tmp_path, with_photos(KEYS, PHOTOS))
    save(folder, change(records(folder)))  # type: ignore[operator]
    with pytest.raises(DamagedCatalogError, match="photos.npy does not match its checksum"):
        Catalog.open(folder)
    # Without checksums (or with ones recomputed), the records' own checks catch it.
    header = json.loads((folder / CATALOG_FILE).read_bytes())
    header["checksums"] = {}
    (folder / CATALOG_FILE).write_text(json.dumps(header))
    with pytest.raises(DamagedCatalogError, match=reason):
        Catalog.open(folder)


def test_camera_names_must_be_sorted_and_distinct(tmp_path: Path) -> None:
    folder = publish(tmp_path, with_photos(KEYS, PHOTOS))
    header = json.loads((folder / CATALOG_FILE).read_bytes())
    header["cameras"] = ["NIKON D750", "Canon EOS 5D"]
    (folder / CATALOG_FILE).write_text(json.dumps(header))
    with pytest.raises(DamagedCatalogError, match="camera names"):
        Catalog.open(folder)


def test_a_published_build_names_its_photos_and_loads_them(client, tmp_path) -> None:
    """On moto: publish points current.json at photos.npy, the loader maps it, rollback keeps it."""
    from image_search.artefacts.loader import load_build, read_pointer
    from image_search.artefacts.location import IndexLocation, new_build_id
    from image_search.artefacts.publish import publish as publish_build
    from image_search.artefacts.rollback import rollback
    from image_search.index import faiss_index

    bucket = f"photos-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    where = IndexLocation(client, bucket, "index/")
    vectors = np.eye(4, dtype=np.float32)
    built = []
    for photos in (PHOTOS, [None] * 4, PHOTOS):
        metadata = with_photos(KEYS, photos).model_copy(update={"build_id": new_build_id()})
        pointer = read_pointer(where)
        etag = None
        if pointer is not None:
            etag = client.head_object(Bucket=bucket, Key=where.pointer_key)["ETag"]
        publish_build(
            where,
            metadata=metadata,
            index=faiss_index.build(vectors, index_type="flat"),
            vectors=vectors,
            keep_builds=5,
            pointer_etag=etag,
        )
        built.append(metadata.build_id)
    pointer = read_pointer(where)
    assert pointer is not None and pointer.photos_key is not None
    assert pointer.photos_key.endswith(f"{built[2]}/{PHOTOS_FILE}")
    loaded = load_build(where, pointer=pointer, cache_dir=tmp_path)
    assert loaded.metadata.photos is not None
    assert loaded.metadata.photos.photo(2) == replace(NIKON_WEST, size=2)
    # The build without photo fields: no photos.npy, no photos_key, no photos.
    assert rollback(where).after == built[1]
    pointer = read_pointer(where)
    assert pointer is not None and pointer.photos_key is None
    assert (
        b"photos_key" not in client.get_object(Bucket=bucket, Key=where.pointer_key)["Body"].read()
    )
    assert load_build(where, pointer=pointer, cache_dir=tmp_path).metadata.photos is None
    assert rollback(where, build_id=built[0]).after == built[0]
    pointer = read_pointer(where)
    assert pointer is not None and pointer.photos_key is not None
    assert load_build(where, pointer=pointer, cache_dir=tmp_path).metadata.photos is not None


def test_the_metadata_written_from_columns_is_the_document_the_items_give() -> None:
    """The build writes each item's photo from the columns (no object per item): the same JSON
    as items carrying their own photo, unknown rows without one."""
    from image_search.artefacts.photos import metadata_json

    rows = [*PHOTOS, Photo.read(PhotoFields(), size=9, modified=None)]
    keys = [*KEYS, "b/3.jpg"]
    own = with_photos(keys, rows)
    for item, photo in zip(own.items, rows, strict=True):
        if photo is not None:
            item.size = photo.size  # type: ignore[assignment]
    bare = own.model_copy(
        update={"items": [i.model_copy(update={"photo": None}) for i in own.items]}
    )
    written = metadata_json(bare, PhotoColumns.of(rows))
    assert json.loads(written) == json.loads(own.model_dump_json())
    assert json.loads(written)["items"][4]["photo"] == {}  # read, and nothing found
    assert "photo" not in json.loads(written)["items"][1]  # never read
    assert metadata_json(bare, None) == bare.model_dump_json().encode()
    with pytest.raises(ValueError, match="photo records"):
        metadata_json(bare, PhotoColumns.of(rows[:2]))


def test_a_listing_reads_the_items_without_their_photos() -> None:
    """What a build reads of the build before it: no object per photo (photos.npy has them)."""
    from image_search.artefacts.manifest import Listing

    # Strings that look like JSON structure: braces, quotes, backslashes, a key naming "photo".
    keys = ['a/,"photo":{}.jpg', "a/2.jpg", 'b/x\\"}{.jpg', "b/y.jpg"]
    odd = replace(CANON, camera='Canon } {"EOS" \\ 5D')
    metadata = with_photos(keys, [odd, None, NIKON_WEST, UNDATED])
    data = metadata.model_dump_json().encode()
    listing = Listing.read(data)
    assert [item.key for item in listing.items] == keys
    assert listing.model_dump() == Listing.model_validate_json(data).model_dump()
    assert not any(hasattr(item, "photo") for item in listing.items)
    assert b'"photo"' not in manifest.PHOTO_MEMBER.sub(b"", data)
    assert Metadata.model_validate_json(data).items[0].photo == odd.document()
