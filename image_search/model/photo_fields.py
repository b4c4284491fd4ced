"""What users filter photos by, read from an image's header: when it was taken, with which
camera, and its size as shown (after the EXIF rotation).

Only the header is read (the first ``HEAD_BYTES`` of a file hold it in every format the build
accepts, EXIF included for camera JPEGs), so a build can read the fields of an image it does not
re-embed from a ranged GET. EXIF in the wild is malformed in every way (dates of
``0000:00:00 00:00:00``, numbers where text belongs, megabyte-long strings): a field that cannot be
read is empty, and reading never raises.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image

LOG = logging.getLogger(__name__)

# Enough for the header and the EXIF block of a camera JPEG (EXIF lives in one 64 KiB segment).
HEAD_BYTES = 64 * 1024
# Longer strings are not a camera's make or model (EXIF allows any length; files abuse it).
MAX_TEXT = 64
EXIF_IFD = 0x8769
DATE_TIME = 0x0132  # IFD0: when the file was last changed, the fallback
MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112
DATE_TIME_ORIGINAL, DATE_TIME_DIGITIZED = 0x9003, 0x9004
OFFSET_TIME_ORIGINAL, OFFSET_TIME_DIGITIZED, OFFSET_TIME = 0x9011, 0x9012, 0x9010
# EXIF orientations 5 to 8 turn the picture a quarter: the shown width is the stored height.
QUARTER_TURNS = {5, 6, 7, 8}
OFFSET = re.compile(r"^[+-](0\d|1[0-4]):[0-5]\d$")


@dataclass(frozen=True, slots=True)
class PhotoFields:
    """The fields of one image; None where the file does not say (or says nonsense)."""

    taken: datetime | None = None  # the wall-clock time on the camera, naive
    taken_offset: str | None = None  # "+02:00" when EXIF records the time zone
    camera: str | None = None  # "Canon EOS 5D": make and model, the make not repeated
    width: int | None = None  # as shown, after the EXIF rotation
    height: int | None = None

    @property
    def orientation(self) -> str | None:
        if not self.width or not self.height:
            return None
        if self.width == self.height:
            return "square"
        return "landscape" if self.width > self.height else "portrait"


def read_fields(head: bytes) -> PhotoFields:
    """The fields in ``head``, the first bytes of an image file (all of it, or ``HEAD_BYTES``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge size in a header is only a number here
            image = Image.open(io.BytesIO(head))
        with image:
            width, height = image.size
            exif = image.getexif()
            details = exif.get_ifd(EXIF_IFD)
            turned = _int(exif.get(ORIENTATION)) in QUARTER_TURNS
    except Exception as exc:  # any failure of Pillow's parsers on a hostile header: no fields
        LOG.debug("no photo fields: %s", exc)
        return PhotoFields()
    taken = _date(details.get(DATE_TIME_ORIGINAL)) or _date(details.get(DATE_TIME_DIGITIZED))
    offset = _offset(details.get(OFFSET_TIME_ORIGINAL)) or _offset(details.get(OFFSET_TIME))
    if taken is None:
        taken, offset = _date(exif.get(DATE_TIME)), None
    return PhotoFields(
        taken=taken,
        taken_offset=offset if taken is not None else None,
        camera=_camera(exif.get(MAKE), exif.get(MODEL)),
        width=height if turned else width,
        height=width if turned else height,
    )


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or len(value) > MAX_TEXT * 4:
        return None
    text = " ".join(value.replace("\0", " ").split())
    return text if 0 < len(text) <= MAX_TEXT and text.isprintable() else None


def _date(value: Any) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:  # "2024:06:01 14:03:22"; zero dates and impossible ones fail here
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _offset(value: Any) -> str | None:
    text = _text(value)
    return text if text is not None and OFFSET.match(text) else None


def _camera(make: Any, model: Any) -> str | None:
    make_text, model_text = _text(make), _text(model)
    if make_text and model_text:
        # The model often repeats the make, or its first word: "Canon" + "Canon EOS 5D",
        # "NIKON CORPORATION" + "NIKON D850". Then the model alone names the camera.
        brand = make_text.split()[0].casefold()
        if model_text.casefold().split()[0] == brand or model_text.casefold().startswith(
            make_text.casefold()
        ):
            return model_text
    return " ".join(part for part in (make_text, model_text) if part) or None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
