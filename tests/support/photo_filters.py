"""What a photo filter means, one photo at a time, from the API's own words: the oracle the
vectorised filters (serve/filters.py) are checked against."""

from __future__ import annotations

from datetime import date, datetime, time

from image_search.artefacts.photos import Photo
from image_search.serve.filters import wall_clock


def matches(photo: Photo, asked: dict[str, object]) -> bool:
    """Whether ``photo`` is one that the API's ``filters`` ``asked`` keep: dates inclusive (a
    date bound covers its whole day), cameras case-folded with runs of spaces as one, sizes and
    orientation as shown; a field the photo lacks never matches a filter on it."""
    after, before = asked.get("taken_after"), asked.get("taken_before")
    if after is not None or before is not None:
        if photo.taken is None:
            return False
        if after is not None and photo.taken < _moment(str(after), time.min):
            return False
        if before is not None and photo.taken > _moment(str(before), time(23, 59, 59)):
            return False
    camera = asked.get("camera")
    if camera is not None and (photo.camera is None or _folded(photo.camera) != _folded(camera)):
        return False
    orientation = asked.get("orientation")
    width, height = int(asked.get("min_width") or 0), int(asked.get("min_height") or 0)
    if orientation is None and not width and not height:
        return True
    if not photo.width or not photo.height:
        return False
    return (
        photo.width >= width
        and photo.height >= height
        and orientation
        in (
            None,
            photo.orientation,
        )
    )


def _moment(text: str, at: time) -> datetime:
    moment = wall_clock(text)
    if isinstance(moment, datetime):
        return moment
    assert isinstance(moment, date)
    return datetime.combine(moment, at)


def _folded(name: object) -> str:
    return " ".join(str(name).casefold().split())
