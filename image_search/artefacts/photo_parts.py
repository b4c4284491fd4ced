"""A view's photo fields in parts: the build's columns (rows ``0 .. N-1``, memory-mapped) and the
segments' (rows ``N ..``), each read where it lies.

Joining them into one array copied every record of the build after each new segment (~400 MB at
10M images, on the poll that found it); the segments' few rows are all that is rebuilt. Each part
numbers its cameras its own way: a field read across parts comes back in ``cameras``' numbering.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from image_search.artefacts.photos import Photo, PhotoColumns


class PhotoParts:
    """Photo columns laid end to end: a row of the whole is a row of one part."""

    def __init__(self, parts: Sequence[PhotoColumns]) -> None:
        self.parts = tuple(parts)
        sizes = [len(part) for part in self.parts]
        # starts[i]: the first row of part i; starts[-1]: every row.
        self.starts = np.cumsum([0, *sizes], dtype=np.int64)
        if len(self.parts) == 1:
            self.cameras = self.parts[0].cameras
        else:
            self.cameras = tuple(sorted({name for part in self.parts for name in part.cameras}))
        number = {name: code for code, name in enumerate(self.cameras, 1)}
        # Per part: its camera code → the code in ``cameras`` (0 stays unknown); one part keeps
        # its own codes.
        self._renumber = [
            None
            if len(self.parts) == 1
            else np.array([0, *(number[name] for name in part.cameras)], dtype=np.uint32)
            for part in self.parts
        ]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def spans(self) -> Iterator[tuple[int, int, PhotoColumns]]:
        """Each part with its first row and the row after its last."""
        for at, part in enumerate(self.parts):
            yield int(self.starts[at]), int(self.starts[at + 1]), part

    def photo(self, row: int) -> Photo:
        at = int(np.searchsorted(self.starts, row, side="right")) - 1
        if not 0 <= row < len(self) or at >= len(self.parts):
            raise IndexError(f"row {row} of {len(self)}")
        return self.parts[at].photo(row - int(self.starts[at]))

    def field(self, name: str, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.generic]:
        """Field ``name`` of ``rows``, in their order (``camera`` in ``cameras``' codes)."""
        rows = np.asarray(rows, dtype=np.int64)
        out: npt.NDArray[np.generic] | None = None
        for at, (start, end, part) in enumerate(self.spans()):
            inside = (rows >= start) & (rows < end)
            values = part.array[name][rows[inside] - start]
            renumber = self._renumber[at]
            if name == "camera" and renumber is not None:
                values = renumber[np.minimum(values, len(renumber) - 1)]
            if out is None:
                out = np.zeros(len(rows), dtype=values.dtype)
            out[inside] = values
        if out is None:
            raise IndexError("no photo columns")
        return out
