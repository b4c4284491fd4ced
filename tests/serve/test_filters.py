"""Filters on photo fields: the bounds a date or a time names, and the matching rows computed
over the columns, checked against a plain predicate over each row's ``Photo``; facets against
counts made one photo at a time."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime

import numpy as np
import pytest

from image_search.artefacts.catalog import Catalog
from image_search.artefacts.manifest import ItemPhoto, Metadata, folder_ranges
from image_search.artefacts.view import LoadedSegment, ViewCatalog
from image_search.errors import PhotoFieldsMissingError
from image_search.serve.facets import facets
from image_search.serve.filters import PhotoFilter, camera_codes, photo_columns, wall_clock
from tests.support.photo_filters import matches
from tests.support.synthetic import items


def catalog(count: int = 3000, *, photos: bool = True) -> ViewCatalog:
    listed = items({"alpha": count // 3, "beta": count - count // 3}, photos=photos)
    metadata = Metadata(
        build_id="20260101T000000000000Z-abcdef",
        model="m",
        dim=4,
        index_type="flat",
        count=len(listed),
        bucket="b",
        folders=folder_ranges(listed),
        items=listed,
        sorted_by="key",
    )
    return ViewCatalog(Catalog.from_metadata(metadata))


@pytest.fixture(scope="module")
def built() -> ViewCatalog:
    return catalog()


def random_filter(pick: random.Random) -> dict[str, object]:
    asked: dict[str, object] = {}
    if pick.random() < 0.5:
        asked["taken_after"] = f"{pick.randint(2014, 2025)}-{pick.randint(1, 12):02d}-01"
    if pick.random() < 0.5:
        asked["taken_before"] = f"{pick.randint(2014, 2025)}-{pick.randint(1, 12):02d}-15T12:30"
    if pick.random() < 0.4:
        asked["camera"] = pick.choice(["canon eos r5", "NIKON D850", "Apple  iPhone 13", "Leica"])
    if pick.random() < 0.4:
        asked["orientation"] = pick.choice(["landscape", "portrait", "square"])
    if pick.random() < 0.3:
        asked["min_width"] = pick.choice([1, 1000, 3000, 4000])
    if pick.random() < 0.3:
        asked["min_height"] = pick.choice([1, 1000, 3000, 4000])
    return asked


def test_random_filters_match_exactly_the_rows_a_per_photo_predicate_keeps(built) -> None:  # type: ignore[no-untyped-def]
    columns = photo_columns(built)
    photos = [columns.photo(row) for row in range(len(built))]
    pick = random.Random(7)
    kept_some = 0
    for _ in range(60):
        asked = random_filter(pick)
        expected = [row for row, photo in enumerate(photos) if matches(photo, asked)]
        found = PhotoFilter.of(**asked).rows(built, None)  # type: ignore[arg-type]
        assert found.dtype == np.int64
        assert found.tolist() == expected, asked
        kept_some += 0 < len(expected) < len(photos)
    assert kept_some > 20  # the filters were not all trivial


def test_rows_stay_inside_the_ranges(built) -> None:  # type: ignore[no-untyped-def]
    chosen = PhotoFilter.of(orientation="portrait")
    everywhere = chosen.rows(built, None)
    ranges = [(10, 200), (1500, 1600)]
    inside = chosen.rows(built, ranges)
    assert inside.tolist() == [r for r in everywhere.tolist() if 10 <= r < 200 or 1500 <= r < 1600]
    assert chosen.rows(built, []).tolist() == []


def test_a_date_covers_its_whole_day_and_a_time_its_second() -> None:
    day = PhotoFilter.of(taken_after="2024-06-01", taken_before="2024-06-01")
    assert day.taken_to is not None and day.taken_from is not None
    assert day.taken_to - day.taken_from == 86400 - 1
    timed = PhotoFilter.of(
        taken_after="2024-06-01T10:00:00.5", taken_before="2024-06-01 10:00:02.5"
    )
    assert timed.taken_from == day.taken_from + 10 * 3600 + 1  # type: ignore[operator]
    assert timed.taken_to == day.taken_from + 10 * 3600 + 2  # type: ignore[operator]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-01", date(2024, 6, 1)),
        ("2024-06-01T14:30", datetime(2024, 6, 1, 14, 30)),
        ("2024-06-01 14:30:05", datetime(2024, 6, 1, 14, 30, 5)),
        ("0001-01-01", date(1, 1, 1)),
    ],
)
def test_wall_clock_takes_dates_and_times(text: str, expected: object) -> None:
    assert wall_clock(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2024-06-01T14:30Z",
        "2024-06-01T14:30+02:00",
        "2024-02-30",
        "20240601",
        "June 1st",
        "",
        "2024",
    ],
)
def test_wall_clock_refuses_zones_and_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="2024-06-01|not a real date"):
        wall_clock(text)


def test_cameras_compare_case_folded() -> None:
    cameras = ("CANON EOS R5", "Canon EOS R5", "NIKON D850")
    assert camera_codes(cameras, "canon  eos r5").tolist() == [1, 2]
    assert camera_codes(cameras, "Leica").tolist() == []


def test_an_empty_filter_is_false_and_a_set_one_true() -> None:
    assert not PhotoFilter()
    assert not PhotoFilter.of()
    assert PhotoFilter.of(min_width=1)
    assert PhotoFilter.of(camera="x").without("camera") == PhotoFilter()


def test_a_build_without_photo_fields_says_rebuild() -> None:
    old = catalog(30, photos=False)
    assert old.photos is None
    with pytest.raises(PhotoFieldsMissingError, match="rebuild"):
        PhotoFilter.of(camera="x").rows(old, None)
    with pytest.raises(PhotoFieldsMissingError, match="rebuild"):
        facets(old, ranges=None, chosen=PhotoFilter())


def test_facets_count_each_facet_without_its_own_filter(built) -> None:  # type: ignore[no-untyped-def]
    columns = photo_columns(built)
    start, end = built.base.folders["beta"]
    asked = {"camera": "nikon d850", "taken_after": "2018-01-01", "orientation": "landscape"}
    counted = facets(built, ranges=[(start, end)], chosen=PhotoFilter.of(**asked))  # type: ignore[arg-type]
    photos = [columns.photo(row) for row in range(start, end)]
    assert counted.count == sum(matches(p, asked) for p in photos)
    no_camera = [p for p in photos if matches(p, {k: v for k, v in asked.items() if k != "camera"})]
    by_camera = Counter((p.camera or "").casefold() for p in no_camera)
    assert counted.no_camera == by_camera.pop("")
    assert {name.casefold(): n for name, n in counted.cameras} == by_camera
    assert [n for _, n in counted.cameras] == sorted(by_camera.values(), reverse=True)
    undated = [
        p for p in photos if matches(p, {k: v for k, v in asked.items() if "taken" not in k})
    ]
    years = Counter(p.taken.year for p in undated if p.taken is not None)
    assert counted.years == sorted(years.items())
    assert counted.no_date == sum(p.taken is None for p in undated)


def with_segment(base: ViewCatalog) -> ViewCatalog:
    """``base`` with a segment that replaces some of its rows, deletes one and adds a folder,
    one of its photos by a camera the build never saw."""
    added = items({"alpha": 40, "gamma": 300}, photos=True)
    renamed = added[-1].photo or ItemPhoto()
    added[-1] = added[-1].model_copy(
        update={"photo": renamed.model_copy(update={"camera": "Leica M11"})}
    )
    deleted = [base.key(len(base) - 1)]
    vectors = np.zeros((len(added), 4), dtype=np.float32)
    return ViewCatalog(base.base, [LoadedSegment("s1", added, deleted, vectors)], after=base)


def test_a_segment_leaves_the_build_columns_in_place_and_filters_match_as_one(built) -> None:  # type: ignore[no-untyped-def]
    view = with_segment(built)
    columns = photo_columns(view)
    # The build's records are read where they lie: no copy of them the length of the build.
    first, *rest = columns.parts
    assert first.array is built.base.photos.array
    assert sum(len(part) for part in rest) == len(view) - len(built.base)
    assert not any(np.shares_memory(part.array, first.array) for part in rest)
    photos = [columns.photo(row) for row in range(len(view))]
    assert photos[-1].camera == "Leica M11"
    live = [row for row in range(len(view)) if not view.is_dead(row)]
    pick = random.Random(11)
    for _ in range(40):
        asked = random_filter(pick)
        expected = [row for row in live if matches(photos[row], asked)]
        assert PhotoFilter.of(**asked).rows(view, None).tolist() == expected, asked  # type: ignore[arg-type]
    leica = PhotoFilter.of(camera="leica m11").rows(view, None)
    assert leica.tolist() == [len(view) - 1]
    scattered = view.folder_place(["gamma"]).extra
    assert set(PhotoFilter.of(camera="leica m11").rows(view, scattered)) == {len(view) - 1}
    counted = facets(view, ranges=None, chosen=PhotoFilter())
    by_camera = Counter((photos[row].camera or "").casefold() for row in live)
    assert counted.no_camera == by_camera.pop("")
    assert {name.casefold(): n for name, n in counted.cameras} == by_camera
    years = Counter(photos[row].taken.year for row in live if photos[row].taken is not None)
    assert dict(counted.years) == years
    assert first.array is built.base.photos.array  # still, after the queries
