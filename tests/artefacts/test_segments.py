"""Segments (issue 25): their keys, their document and vectors checked as input, and publishing
one with If-Match on the pointer, retried when another writer got there first."""

from __future__ import annotations

import json

import numpy as np
import pytest

from image_search.artefacts.loader import read_pointer, write_pointer
from image_search.artefacts.location import IndexLocation, new_build_id, new_segment_id
from image_search.artefacts.manifest import Item, Pointer, SegmentRef
from image_search.artefacts.segment_publish import current, publish_segment
from image_search.artefacts.segments import Applied, Segment, load_segment, read_segment
from image_search.errors import IndexMismatchError, IndexNotReadyError
from image_search.storage import s3
from tests.support.vectors import clustered

DIM = 8


@pytest.fixture
def where(client: s3.S3Client, bucket: str) -> IndexLocation:
    return IndexLocation(client, bucket, "index/")


def based(where: IndexLocation) -> Pointer:
    """A pointer at a build (its files do not matter to segments)."""
    pointer = where.pointer_for(new_build_id())
    write_pointer(where, pointer, etag=None)
    return pointer


def segment_of(pointer: Pointer, keys: list[str], *, deletes: list[str] = ()) -> Segment:  # type: ignore[assignment]
    return Segment(
        segment_id=new_segment_id(),
        base_build_id=pointer.build_id,
        model="m",
        dim=DIM,
        items=[Item(key=k, folder=k.split("/")[0], etag=f"e-{k}", size=1) for k in keys],
        deletes=list(deletes),
        applied=[Applied(key=k, etag=f"e-{k}", sequencer="0A") for k in keys],
    )


def objects(where: IndexLocation, prefix: str) -> list[str]:
    found = s3.list_objects(where.client, bucket=where.bucket, prefix=prefix)
    return sorted(obj["Key"] for obj in found)


def test_keys_live_under_segments_and_ids_are_checked(where: IndexLocation) -> None:
    sid = new_segment_id()
    assert where.segment_key(sid) == f"index/segments/{sid}/segment.json"
    assert where.segment_vectors_key(sid) == f"index/segments/{sid}/vectors.npy"
    for bad in ("../x", "", "20261130T120000000000Z-aaaaaa/..", "a/b"):
        with pytest.raises(IndexMismatchError, match="not a segment id"):
            where.segment_folder(bad)


def test_a_pointer_without_segments_is_written_as_before(where: IndexLocation) -> None:
    pointer = where.pointer_for(new_build_id())
    assert "segments" not in json.loads(pointer.document())
    ref = SegmentRef(segment_id=new_segment_id(), key="k", adds=1, deletes=0)
    with_one = pointer.model_copy(update={"segments": [ref]})
    assert Pointer.model_validate_json(with_one.document()) == with_one


def test_a_published_segment_is_named_by_the_pointer_and_reads_back(where: IndexLocation) -> None:
    base = based(where)
    vectors = clustered(2, dim=DIM)
    segment = segment_of(base, ["a/1.jpg", "b/2.jpg"], deletes=["a/0.jpg"])
    pointer = publish_segment(where, segment, vectors)

    assert read_pointer(where) == pointer
    assert pointer.build_id == base.build_id and pointer.index_key == base.index_key
    (ref,) = pointer.segments or []
    assert (ref.segment_id, ref.adds, ref.deletes) == (segment.segment_id, 2, 1)
    loaded, got = load_segment(where, ref, model="m", dim=DIM)
    assert [i.key for i in loaded.items] == ["a/1.jpg", "b/2.jpg"]
    assert loaded.deletes == ["a/0.jpg"] and loaded.applied == segment.applied
    np.testing.assert_array_equal(got, vectors)


def test_deletes_only_have_an_empty_vectors_file(where: IndexLocation) -> None:
    base = based(where)
    pointer = publish_segment(
        where, segment_of(base, [], deletes=["a/1.jpg"]), np.zeros((0, DIM), np.float32)
    )
    _, got = load_segment(where, (pointer.segments or [])[0])
    assert got.shape == (0, DIM)


def test_no_build_yet_means_no_segment(where: IndexLocation) -> None:
    fake = where.pointer_for(new_build_id())
    with pytest.raises(IndexNotReadyError, match="first build"):
        publish_segment(where, segment_of(fake, ["a/1.jpg"]), clustered(1, dim=DIM))


def test_vectors_no_embedder_makes_are_not_published(where: IndexLocation) -> None:
    base = based(where)
    with pytest.raises(ValueError, match="unit length"):
        publish_segment(where, segment_of(base, ["a/1.jpg"]), np.full((1, DIM), 3, np.float32))
    assert objects(where, where.segments_prefix) == []


def test_a_lost_race_is_retried_on_the_new_pointer(where: IndexLocation) -> None:
    based(where)
    stale = current(where)  # read before the other writer published
    first = publish_segment(where, segment_of(stale[0], ["a/1.jpg"]), clustered(1, dim=DIM))
    second = publish_segment(
        where, segment_of(stale[0], ["a/2.jpg"]), clustered(1, dim=DIM, seed=1), based_on=stale
    )
    assert len(second.segments or []) == 2
    assert (second.segments or [])[0] == (first.segments or [])[0]
    assert read_pointer(where) == second


def test_a_refresh_remakes_the_segment_against_the_new_pointer(where: IndexLocation) -> None:
    based(where)
    stale = current(where)
    publish_segment(where, segment_of(stale[0], ["a/1.jpg"]), clustered(1, dim=DIM))
    seen: list[Pointer] = []
    lost = segment_of(stale[0], ["a/2.jpg"])

    def nothing_left(pointer: Pointer) -> None:
        seen.append(pointer)
        return None

    after = publish_segment(
        where, lost, clustered(1, dim=DIM), based_on=stale, refresh=nothing_left
    )
    assert seen == [after] and len(after.segments or []) == 1
    # the lost segment's files were deleted: nothing names them
    assert not any(lost.segment_id in key for key in objects(where, where.segments_prefix))

    def remade(pointer: Pointer) -> tuple[Segment, np.ndarray]:
        return segment_of(pointer, ["a/3.jpg"]), clustered(1, dim=DIM, seed=3)

    stale = current(where)
    publish_segment(where, segment_of(stale[0], ["a/4.jpg"]), clustered(1, dim=DIM))
    final = publish_segment(
        where,
        segment_of(stale[0], ["a/5.jpg"]),
        clustered(1, dim=DIM),
        based_on=stale,
        refresh=remade,
    )
    last = read_segment(where, (final.segments or [])[-1])
    assert [i.key for i in last.items] == ["a/3.jpg"]


def published_ref(where: IndexLocation) -> SegmentRef:
    pointer = publish_segment(where, segment_of(based(where), ["a/1.jpg"]), clustered(1, dim=DIM))
    return (pointer.segments or [])[0]


def test_a_ref_that_names_another_key_or_count_is_refused(where: IndexLocation) -> None:
    ref = published_ref(where)
    other = ref.model_copy(update={"key": "a/1.jpg"})
    with pytest.raises(IndexMismatchError, match="is not its own"):
        read_segment(where, other)
    with pytest.raises(IndexMismatchError, match="not a segment id"):
        read_segment(where, ref.model_copy(update={"segment_id": ".."}))
    with pytest.raises(IndexMismatchError, match="the pointer says 2"):
        read_segment(where, ref.model_copy(update={"adds": 2}))
    with pytest.raises(IndexMismatchError, match="model 'm', not 'other'"):
        read_segment(where, ref, model="other")
    with pytest.raises(IndexMismatchError, match="width 8, not 4"):
        read_segment(where, ref, dim=4)


def test_a_segment_document_with_bad_content_is_refused(where: IndexLocation) -> None:
    ref = published_ref(where)
    written = json.loads(s3.get_bytes(where.client, bucket=where.bucket, key=ref.key))
    cases = {
        "names": {"segment_id": new_segment_id()},
        "base": {"base_build_id": "../x"},
        "folder": {"items": [{"key": "a/1.jpg", "folder": "b", "etag": "e", "size": 1}]},
        "unreadable": {"items": "nope"},
    }
    for expected, change in cases.items():
        data = json.dumps(written | change).encode()
        s3.put_bytes(
            where.client, bucket=where.bucket, key=ref.key, data=data, content_type="a/json"
        )
        with pytest.raises(IndexMismatchError, match=expected):
            read_segment(where, ref)


@pytest.mark.parametrize(
    ("vectors", "expected"),
    [
        (np.full((1, DIM), 3, np.float32), "checksum"),
        (b"not a numpy file", "unreadable"),
        (np.zeros((1, DIM * 10_000), np.float32), "more than"),
    ],
)
def test_vectors_replaced_after_publishing_are_refused(
    where: IndexLocation, vectors: object, expected: str
) -> None:
    ref = published_ref(where)
    if isinstance(vectors, np.ndarray):
        from image_search.artefacts.segments import vectors_file

        data = vectors_file(vectors, dim=vectors.shape[1])
    else:
        data = bytes(vectors)  # type: ignore[call-overload]
    key = where.segment_vectors_key(ref.segment_id)
    s3.put_bytes(where.client, bucket=where.bucket, key=key, data=data, content_type="x")
    with pytest.raises(IndexMismatchError, match=expected):
        load_segment(where, ref)


def test_vectors_that_match_a_forged_checksum_still_pass_the_shard_checks(
    where: IndexLocation,
) -> None:
    from image_search.artefacts.segments import vectors_file
    from image_search.storage import checksum

    ref = published_ref(where)
    data = vectors_file(np.full((1, DIM), np.nan, np.float32), dim=DIM)
    key = where.segment_vectors_key(ref.segment_id)
    s3.put_bytes(where.client, bucket=where.bucket, key=key, data=data, content_type="x")
    written = json.loads(s3.get_bytes(where.client, bucket=where.bucket, key=ref.key))
    written["checksums"]["vectors.npy"] = checksum.of_bytes(data)
    forged = json.dumps(written).encode()
    s3.put_bytes(where.client, bucket=where.bucket, key=ref.key, data=forged, content_type="j")
    with pytest.raises(IndexMismatchError, match="not all finite"):
        load_segment(where, ref)
