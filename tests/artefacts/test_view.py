"""A base build with segments applied: deletes, adds and overwrites, as rows, counts and places."""

from __future__ import annotations

import numpy as np
import pytest

from image_search.artefacts.catalog import Catalog
from image_search.artefacts.loader import LoadedBuild
from image_search.artefacts.manifest import Item
from image_search.artefacts.places import Place
from image_search.artefacts.view import LoadedSegment, LoadedView, ViewCatalog
from image_search.index import faiss_index
from image_search.index.search_index import allowed_ids
from tests.support.factories import metadata_for
from tests.support.vectors import clustered

BASE_KEYS = sorted(["cats/a.jpg", "cats/b.jpg", "cats/old/c.jpg", "dogs/d.jpg", "dogs/e.jpg"])


def segment(name: str, adds: list[str], deletes: list[str] = (), *, seed: int = 0) -> LoadedSegment:  # type: ignore[assignment]
    items = [Item(key=key, folder=key.split("/")[0], etag="x", size=1) for key in adds]
    return LoadedSegment(name, items, list(deletes), clustered(len(adds), dim=4, seed=seed))


@pytest.fixture
def base() -> LoadedBuild:
    catalog = Catalog.from_metadata(metadata_for(BASE_KEYS, sorted_by="key"))
    index = faiss_index.build(clustered(len(BASE_KEYS), dim=4), index_type="flat")
    return LoadedBuild(catalog, index)


def live_keys(catalog: ViewCatalog, place: Place) -> list[str]:
    rows = allowed_ids(place.allowed(), len(catalog))
    return sorted(catalog.key(int(row)) for row in rows if not catalog.is_dead(int(row)))


def test_deletes_adds_and_overwrites_apply_in_order(base) -> None:
    view = LoadedView.of(
        base,
        [
            segment("s1", ["cats/new/f.jpg", "birds/g.jpg"], ["dogs/d.jpg"]),
            segment("s2", ["cats/a.jpg", "birds/h.jpg"], ["cats/a.jpg", "birds/g.jpg"], seed=1),
        ],
    )
    catalog = view.metadata
    assert sorted(view.rows) == sorted(
        [
            "cats/a.jpg",
            "cats/b.jpg",
            "cats/old/c.jpg",
            "dogs/e.jpg",
            "cats/new/f.jpg",
            "birds/h.jpg",
        ]
    )
    assert catalog.count == len(view.rows) == 6
    assert len(catalog) == 5 + 4  # every row numbered, the deleted ones too
    # The overwrite: a new row, with the new vector; the base row is deleted.
    row = view.rows["cats/a.jpg"]
    assert row == 7 and catalog.key(row) == "cats/a.jpg" and catalog.folder(row) == "cats"
    np.testing.assert_array_equal(view.index.vector(row)[0], view.segments[1].vectors[0])
    assert catalog.is_dead(BASE_KEYS.index("cats/a.jpg")) and catalog.is_dead(6)
    assert "dogs/d.jpg" not in view.rows and "birds/g.jpg" not in view.rows
    assert catalog.folders == {"cats": 4, "dogs": 1, "birds": 1}
    assert catalog.end(0) == 5 and catalog.end(1) == 7 and catalog.end(2) == 9


def test_places_hold_live_rows_of_the_base_and_the_segments(base) -> None:
    view = LoadedView.of(base, [segment("s1", ["cats/new/f.jpg", "dogs/x/y.jpg"], ["cats/b.jpg"])])
    catalog = view.metadata
    cats = catalog.folder_place(["cats"])
    assert live_keys(catalog, cats) == ["cats/a.jpg", "cats/new/f.jpg", "cats/old/c.jpg"]
    assert catalog.live_in(cats) == 3
    assert live_keys(catalog, catalog.prefix_place("cats/n")) == ["cats/new/f.jpg"]
    both = catalog.folder_place(["dogs"]) & catalog.prefix_place("dogs/x")
    assert live_keys(catalog, both) == ["dogs/x/y.jpg"]
    assert catalog.children("cats/") == {"cats/new/": 1, "cats/old/": 1}
    assert catalog.children("dogs/") == {"dogs/x/": 1}


def test_a_folder_whose_images_are_all_deleted_is_gone(base) -> None:
    view = LoadedView.of(base, [segment("s1", [], ["dogs/d.jpg", "dogs/e.jpg"])])
    assert view.metadata.folders == {"cats": 3}
    assert view.metadata.live_in(view.metadata.prefix_place("dogs/")) == 0
    found = view.index.search(view.index.vector(0), k=10)
    assert {view.metadata.key(row) for row in found.ids} == {
        "cats/a.jpg",
        "cats/b.jpg",
        "cats/old/c.jpg",
    }


def test_many_scattered_segment_rows_become_one_array_of_rows(base) -> None:
    keys = [f"{'cats' if i % 2 else 'dogs'}/n{i:03d}.jpg" for i in range(200)]
    view = LoadedView.of(base, [segment("s1", keys)])
    allowed = view.metadata.folder_place(["cats"]).allowed()
    assert isinstance(allowed, np.ndarray)
    assert len(allowed) == 3 + 100


def test_a_view_extended_segment_by_segment_equals_one_made_at_once(base) -> None:
    segments = [
        segment("s1", ["cats/new/f.jpg", "birds/g.jpg"], ["dogs/d.jpg"]),
        segment("s2", ["cats/a.jpg", "birds/h.jpg"], ["cats/a.jpg", "birds/g.jpg"], seed=1),
        segment("s3", ["birds/h.jpg", "dogs/d.jpg"], ["cats/b.jpg"], seed=2),
    ]
    whole = LoadedView.of(base, segments)
    step = LoadedView.of(base, segments[:1]).extended(segments[1:2]).extended(segments[2:])
    assert step.segment_ids == whole.segment_ids == ("s1", "s2", "s3")
    assert dict(step.rows) == dict(whole.rows)
    assert step.metadata.ends == whole.metadata.ends and step.metadata.changes == 10
    np.testing.assert_array_equal(step.metadata.dead, whole.metadata.dead)
    np.testing.assert_array_equal(step.metadata.extra_live, whole.metadata.extra_live)
    np.testing.assert_array_equal(step.index.extra, whole.index.extra)
    query = clustered(1, dim=4, seed=9)[0]
    assert step.index.search(query, k=20) == whole.index.search(query, k=20)
    assert step.metadata.folders == whole.metadata.folders
