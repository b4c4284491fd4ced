"""Where a query searches: the whole index, some folders, a key prefix, or both, as id ranges."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from image_search.artefacts.catalog import Catalog
from image_search.errors import UnknownFolderError, UnknownPrefixError
from image_search.index.prefixes import intersect
from image_search.index.search_index import Ranges

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
    ranges: Ranges | None = None  # None: the whole index

    @property
    def chosen(self) -> bool:
        """True when the caller named the place to search (no folder detection then)."""
        return self.folders is not None or bool(self.prefix)


def resolve(metadata: Catalog, *, folder: str = "", prefix: str = "") -> Scope:
    """The scope for a ``folder`` ("" or "*" for all) and a key ``prefix`` ("" for any).

    Raises ``UnknownFolderError`` for a folder the index does not hold and
    ``UnknownPrefixError`` for a prefix no indexed key starts with (or none inside the folder).
    """
    folders = _folders(metadata, folder)
    if folders is None and not prefix:
        return Scope()
    ranges = sorted(metadata.folders[name] for name in folders) if folders else None
    if prefix:
        order = metadata.key_order()
        found = sorted(r for spelled in spellings(prefix) for r in order.ranges(spelled))
        ranges = found if ranges is None else intersect(ranges, found)
        if not ranges:
            where = f" in folder {folder!r}" if folders else ""
            raise UnknownPrefixError(f"no indexed image key starts with {prefix!r}{where}")
    return Scope(folders=folders, prefix=prefix, ranges=ranges)


def of_folders(metadata: Catalog, folders: list[str]) -> Scope:
    """The scope of folders detected from a query."""
    return Scope(folders=folders, ranges=[metadata.folders[name] for name in folders])


def sub_folders(metadata: Catalog, parent: str) -> list[tuple[str, int]]:
    """The top-level folders (``parent`` empty) or those directly under ``parent``, with how
    many images each holds at any depth."""
    parent = parent.strip("/")
    counts: dict[str, int] = {}
    if not parent:
        for name, (start, end) in metadata.folders.items():
            counts[same_name(name)] = counts.get(same_name(name), 0) + end - start
        return list(counts.items())
    order = metadata.key_order()
    found = False
    for spelled in spellings(parent + "/"):
        found = found or bool(order.ranges(spelled))
        for child, count in order.children(spelled):
            name = same_name(child.rstrip("/"))
            counts[name] = counts.get(name, 0) + count
    if not found:
        raise UnknownPrefixError(f"no indexed image is under {parent + '/'!r}")
    return list(counts.items())


def _folders(metadata: Catalog, folder: str) -> list[str] | None:
    if folder in ("", ALL_FOLDERS):
        return None
    name = same_name(folder.strip("/"))
    named = [known for known in metadata.folders if same_name(known) == name]
    if not named:
        known = ", ".join(dict.fromkeys(map(same_name, metadata.folders))) or "none"
        raise UnknownFolderError(f"folder {folder!r} is not in the index; known folders: {known}")
    return named
