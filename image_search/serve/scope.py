"""Where a query searches: the whole index, some folders, a key prefix, or both, as the rows a
search is allowed (id ranges of the base build, and the segments' live rows in them)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from image_search.artefacts.places import Place
from image_search.artefacts.view import ViewCatalog
from image_search.errors import UnknownFolderError, UnknownPrefixError
from image_search.index.search_index import Allowed

# An explicit "every folder": a text query then skips folder detection.
ALL_FOLDERS = "*"


def same_name(name: str) -> str:
    """One spelling per name: macOS and some upload tools write "café" decomposed (NFD), most
    others composed (NFC), so one folder can arrive as two byte strings. Keys stay byte-exact;
    names are compared, listed and detected in NFC."""
    return unicodedata.normalize("NFC", name)


def spellings(text: str) -> list[str]:
    """``text`` as given and in both normal forms, each once."""
    return list(dict.fromkeys([text, same_name(text), unicodedata.normalize("NFD", text)]))


@dataclass(frozen=True)
class Scope:
    folders: list[str] | None = None  # None: every folder
    prefix: str = ""
    # The rows to search (None: the whole index): id ranges, or an array of rows when the
    # segments add many rows scattered among them (artefacts/view.py).
    ranges: Allowed = None

    @property
    def chosen(self) -> bool:
        """True when the caller named the place to search (no folder detection then)."""
        return self.folders is not None or bool(self.prefix)


def resolve(metadata: ViewCatalog, *, folder: str = "", prefix: str = "") -> Scope:
    """The scope for a ``folder`` ("" or "*" for all) and a key ``prefix`` ("" for any).

    Raises ``UnknownFolderError`` for a folder the index does not hold and
    ``UnknownPrefixError`` for a prefix no indexed key starts with (or none inside the folder).
    """
    folders = _folders(metadata, folder)
    if folders is None and not prefix:
        return Scope()
    place = metadata.folder_place(folders) if folders else None
    if prefix:
        found = Place([])
        for spelled in spellings(prefix):
            found = found | metadata.prefix_place(spelled)
        place = found if place is None else place & found
        if not metadata.live_in(place):
            where = f" in folder {folder!r}" if folders else ""
            raise UnknownPrefixError(f"no indexed image key starts with {prefix!r}{where}")
    assert place is not None  # a folder or a prefix was named
    return Scope(folders=folders, prefix=prefix, ranges=place.allowed())


def before(allowed: Allowed, end: int, *, total: int) -> Allowed:
    """``allowed`` without the rows numbered ``end`` or later (of ``total``): a cursor's pages
    leave out the segments published after its first page."""
    if end >= total:
        return allowed
    if allowed is None:
        return [(0, end)]
    if isinstance(allowed, np.ndarray):
        return allowed[allowed < end]
    return [(start, min(stop, end)) for start, stop in allowed if start < end]


def of_folders(metadata: ViewCatalog, folders: list[str]) -> Scope:
    """The scope of folders detected from a query."""
    return Scope(folders=folders, ranges=metadata.folder_place(folders).allowed())


def sub_folders(metadata: ViewCatalog, parent: str) -> list[tuple[str, int]]:
    """The top-level folders (``parent`` empty) or those directly under ``parent``, with how
    many images each holds at any depth."""
    parent = parent.strip("/")
    counts: dict[str, int] = {}
    if not parent:
        for name, count in metadata.folders.items():
            counts[same_name(name)] = counts.get(same_name(name), 0) + count
        return list(counts.items())
    found = False
    for spelled in spellings(parent + "/"):
        found = found or bool(metadata.live_in(metadata.prefix_place(spelled)))
        for child, count in metadata.children(spelled).items():
            name = same_name(child.rstrip("/"))
            counts[name] = counts.get(name, 0) + count
    if not found:
        raise UnknownPrefixError(f"no indexed image is under {parent + '/'!r}")
    return list(counts.items())


def _folders(metadata: ViewCatalog, folder: str) -> list[str] | None:
    if folder in ("", ALL_FOLDERS):
        return None
    name = same_name(folder.strip("/"))
    named = [known for known in metadata.folders if same_name(known) == name]
    if not named:
        known = ", ".join(dict.fromkeys(map(same_name, metadata.folders))) or "none"
        raise UnknownFolderError(f"folder {folder!r} is not in the index; known folders: {known}")
    return named
