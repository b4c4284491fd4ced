"""Counts per camera and per year in a scope, for a page's camera picker and date range.

Each facet counts the images that match every filter but its own: the camera counts ignore
``camera`` and the year counts ignore the dates, so a picker still lists the other choices once
one is made. ``count`` is the images matching every filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from image_search.artefacts.photos import NO_TIME
from image_search.artefacts.view import ViewCatalog
from image_search.index.search_index import Allowed
from image_search.serve.filters import PhotoFilter, camera_name, photo_columns


@dataclass(frozen=True, slots=True)
class Facets:
    count: int  # images in the scope matching every filter
    cameras: list[tuple[str, int]]  # most images first, then by name
    no_camera: int  # images whose camera is unknown (the camera facet's scope)
    years: list[tuple[int, int]]  # the year taken, ascending
    no_date: int  # images with no date (the year facet's scope)


def facets(catalog: ViewCatalog, *, ranges: Allowed, chosen: PhotoFilter) -> Facets:
    columns = photo_columns(catalog)
    count = len(chosen.rows(catalog, ranges))
    codes = columns.field("camera", chosen.without("camera").rows(catalog, ranges))
    per_code = np.bincount(codes, minlength=len(columns.cameras) + 1)
    # One entry per camera_name(): a filter matches "Canon EOS R5" and "CANON EOS R5" alike.
    cameras: dict[str, tuple[str, int]] = {}
    for code in np.flatnonzero(per_code[1:]) + 1:
        name, found = columns.cameras[code - 1], int(per_code[code])
        shown, total = cameras.get(camera_name(name), (name, 0))
        cameras[camera_name(name)] = (shown, total + found)
    taken = columns.field("taken", chosen.without("taken_from", "taken_to").rows(catalog, ranges))
    dated = taken[taken != NO_TIME]
    # Wall-clock seconds since 1970 as if UTC: numpy's calendar gives their year.
    years, per_year = np.unique(
        dated.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970,
        return_counts=True,
    )
    return Facets(
        count=count,
        cameras=sorted(cameras.values(), key=lambda pair: (-pair[1], pair[0])),
        no_camera=int(per_code[0]),
        years=[(int(year), int(n)) for year, n in zip(years, per_year, strict=True)],
        no_date=len(taken) - len(dated),
    )
