"""Where a query searches. Folder names spelled composed (NFC) and decomposed (NFD, as macOS
writes them) are one folder for listing, choosing and detection; keys stay byte-exact."""

from __future__ import annotations

import pytest

from image_search.artefacts.catalog import Catalog
from image_search.artefacts.view import ViewCatalog
from image_search.errors import UnknownFolderError
from image_search.serve import scope
from image_search.serve.folders import detect
from tests.support.factories import metadata_for

NFC, NFD = "caf\u00e9", "cafe\u0301"  # "café" twice, as different bytes
KEYS = sorted([f"{NFC}/a.jpg", f"{NFC}/terrace/b.jpg", f"{NFD}/c.jpg", f"{NFD}/terrace/d.jpg"])
KEYS += ["dogs/e.jpg"]


@pytest.fixture
def catalog() -> ViewCatalog:
    return ViewCatalog(Catalog.from_metadata(metadata_for(KEYS, sorted_by="key")))


def keys_in(catalog: ViewCatalog, where: scope.Scope) -> list[str]:
    assert where.ranges is not None
    return sorted(catalog.key(row) for start, end in where.ranges for row in range(start, end))


def test_one_folder_is_listed_once_with_every_image(catalog) -> None:
    assert sorted(scope.sub_folders(catalog, "")) == [(NFC, 4), ("dogs", 1)]
    for parent in (NFC, NFD):
        assert scope.sub_folders(catalog, parent) == [(f"{NFC}/terrace", 2)]


@pytest.mark.parametrize("spelled", [NFC, NFD])
def test_either_spelling_chooses_the_whole_folder_and_keys_stay_as_stored(
    catalog, spelled: str
) -> None:
    where = scope.resolve(catalog, folder=spelled)
    assert keys_in(catalog, where) == sorted(KEYS[:4])  # both spellings' keys, bytes unchanged
    assert keys_in(catalog, scope.resolve(catalog, prefix=f"{spelled}/terrace/")) == sorted(
        [f"{NFC}/terrace/b.jpg", f"{NFD}/terrace/d.jpg"]
    )


@pytest.mark.parametrize("query", [f"photos from the {NFC}", f"photos from the {NFD}"])
def test_either_spelling_in_a_query_detects_both(catalog, query: str) -> None:
    assert sorted(detect(query, catalog.folders)) == sorted([NFC, NFD])


def test_an_unknown_folder_lists_each_name_once(catalog) -> None:
    with pytest.raises(UnknownFolderError, match=f"known folders: {NFC}, dogs$"):
        scope.resolve(catalog, folder="cats")
