"""ivf-pq's second stage: 8-bit codes of every vector, to re-rank the PQ candidates near-exactly.

64-byte PQ codes find the right neighbourhood but not the order inside it (recall@10 0.43 on
clustered 512-d vectors, bench/); scoring the top candidates again with 8-bit scalar codes
(512 bytes a vector, per-dimension range) brings recall@10 to 0.97+. Those codes are 7x the PQ
index, so the service does not download them at start: they sit in S3 grouped by IVF list, and
the local copy is filled one list at a time, first the lists a query needs, then the rest in the
background. A query only ever re-ranks candidates from the lists it probed, so a cold query
fetches a few of them (a few hundred KB each at 1M images) instead of the whole file.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np
import numpy.typing as npt

from image_search.model.vectors import Vectors

LOG = logging.getLogger(__name__)

# Query-time fetches of missing lists run in parallel, this many at once.
FETCH_WORKERS = 8
# The background fill asks for runs of missing lists up to this many bytes in one request.
FILL_REQUEST_BYTES = 16 * 2**20

Fetch = Callable[[int, int], bytes]  # byte range [start, end) of the codes → bytes
Rows = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Layout:
    """Where each row's code sits: codes are stored list by list, in IVF-list order."""

    positions: npt.NDArray[np.integer]  # row → position in the codes
    list_starts: npt.NDArray[np.int64]  # list l holds positions [list_starts[l], list_starts[l+1])
    bounds: npt.NDArray[np.float32]  # (2, dim): each dimension's minimum and range

    @property
    def dim(self) -> int:
        return int(self.bounds.shape[1])

    def lists_of(self, positions: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
        return np.searchsorted(self.list_starts, positions, side="right") - 1


class Rerank:
    """Scores of chosen rows against a query, from their 8-bit codes."""

    def __init__(
        self,
        layout: Layout,
        codes: npt.NDArray[np.uint8],
        *,
        fetch: Fetch | None = None,
        partial: Path | None = None,
        complete: Path | None = None,
    ) -> None:
        """Codes all in ``codes``; or, with ``fetch``, a sparse local file ``partial`` that
        ``codes`` maps, filled list by list and renamed to ``complete`` once whole."""
        self.layout = layout
        self._codes = codes
        nlist = len(layout.list_starts) - 1
        self._present = np.full(nlist, fetch is None, dtype=bool)
        self._fetch = fetch
        self._partial, self._complete = partial, complete
        self._fd = None if partial is None else os.open(partial, os.O_WRONLY)
        self._close = weakref.finalize(self, _close, self._fd)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.filled = threading.Event()
        if self._present.all():
            self.filled.set()

    @property
    def count(self) -> int:
        return len(self.layout.positions)

    @property
    def codes(self) -> npt.NDArray[np.uint8]:
        """Every row's code, in list order (complete only once ``filled`` is set)."""
        return self._codes

    def scores(self, rows: Rows, query: Vectors) -> npt.NDArray[np.float32]:
        """Inner products of ``rows``' vectors (as their codes decode) with one query."""
        codes = self._codes_of(rows)
        vmin, vdiff = self.layout.bounds
        # decode(c) = vmin + (c + 0.5) / 255 · vdiff, folded into the query once per call.
        weights = (query.ravel() * vdiff / 255.0).astype(np.float32)
        offset = float(query.ravel() @ vmin + 0.5 * weights.sum())
        return codes.astype(np.float32) @ weights + offset

    def vectors(self, rows: Rows) -> Vectors:
        vmin, vdiff = self.layout.bounds
        decoded = vmin + (self._codes_of(rows).astype(np.float32) + 0.5) / 255.0 * vdiff
        return decoded.astype(np.float32)

    def _codes_of(self, rows: Rows) -> npt.NDArray[np.uint8]:
        positions = self.layout.positions[np.asarray(rows, dtype=np.int64)].astype(np.int64)
        if not self.filled.is_set():
            self._ensure(np.unique(self.layout.lists_of(positions)))
        return np.asarray(self._codes[positions])

    def _ensure(self, lists: npt.NDArray[np.int64]) -> None:
        missing = [int(lst) for lst in lists if not self._present[lst]]
        if not missing:
            return
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(FETCH_WORKERS, thread_name_prefix="rerank")
        for future in [self._pool.submit(self._load_lists, lst, lst + 1) for lst in missing]:
            future.result()

    def _load_lists(self, first: int, end: int) -> None:
        """Fetch lists [first, end) into the local file and mark them present."""
        assert self._fetch is not None
        start, stop = self.layout.list_starts[first], self.layout.list_starts[end]
        width = self.layout.dim
        if stop > start:
            data = self._fetch(int(start) * width, int(stop) * width)
            with self._lock:
                if self._fd is None:  # another fetch completed the file meanwhile
                    return
                os.pwrite(self._fd, data, int(start) * width)
        with self._lock:
            self._present[first:end] = True
            if self._present.all() and not self.filled.is_set():
                self._finish()

    def _finish(self) -> None:
        self._close()
        self._fd = None
        if self._partial is not None and self._complete is not None:
            # Whole now: a later process serving this build maps it instead of fetching again.
            os.replace(self._partial, self._complete)
        self.filled.set()
        LOG.info("re-rank codes complete (%d rows)", self.count)

    def fill_in_background(self) -> None:
        """Fetch every list not yet present, in large requests, on a daemon thread."""
        if self.filled.is_set():
            return
        threading.Thread(
            target=_fill, args=(weakref.ref(self),), name="rerank-fill", daemon=True
        ).start()


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _fill(ref: weakref.ReferenceType[Rerank]) -> None:
    # Holds the store only while fetching one run, so a build that is no longer served is
    # garbage-collected and its fill stops.
    while (store := ref()) is not None and not store.filled.is_set():
        run = _next_run(store)
        if run is None:
            return
        try:
            store._load_lists(*run)
        except Exception as exc:  # queries fetch what they need themselves
            LOG.warning("re-rank codes: background fill stopped: %s", exc)
            return
        del store


def _next_run(store: Rerank) -> tuple[int, int] | None:
    missing = np.flatnonzero(~store._present)
    if len(missing) == 0:
        return None
    first = end = int(missing[0])
    starts, width = store.layout.list_starts, store.layout.dim
    while end < len(store._present) and not store._present[end]:
        if end > first and (starts[end + 1] - starts[first]) * width > FILL_REQUEST_BYTES:
            break
        end += 1
    return first, end


def open_local(layout: Layout, *, path: Path, fetch: Fetch) -> Rerank:
    """The codes at ``path`` when an earlier process completed them, else a store that fills a
    private sparse file from ``fetch`` (nothing is read before it is written)."""
    shape = (len(layout.positions), layout.dim)
    if path.is_file() and path.stat().st_size == shape[0] * shape[1]:
        return Rerank(layout, np.memmap(path, dtype=np.uint8, mode="r", shape=shape))
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    with partial.open("wb") as file:
        file.truncate(shape[0] * shape[1])
    codes = np.memmap(partial, dtype=np.uint8, mode="r", shape=shape)
    return Rerank(layout, codes, fetch=fetch, partial=partial, complete=path)


# ---- building ------------------------------------------------------------------------------


def train_bounds(sample: Vectors) -> npt.NDArray[np.float32]:
    quantizer = faiss.ScalarQuantizer(sample.shape[1], faiss.ScalarQuantizer.QT_8bit)
    quantizer.train(np.ascontiguousarray(sample, dtype=np.float32))
    trained = faiss.vector_to_array(quantizer.trained).astype(np.float32)
    return trained.reshape(2, sample.shape[1])


def encode(vectors: Vectors, bounds: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """The codes faiss's 8-bit scalar quantizer would give: floor(255 · (x − min) / range)."""
    vmin, vdiff = bounds
    scaled = (vectors - vmin) / np.where(vdiff > 0, vdiff, 1.0)
    return np.clip(np.floor(scaled * 255.0), 0, 255).astype(np.uint8)


def layout_of(ivf: faiss.IndexIVF, bounds: npt.NDArray[np.float32]) -> Layout:
    """Positions that group the rows by IVF list, in list order."""
    lists = ivf.invlists
    assert lists is not None
    sizes = np.array([lists.list_size(lst) for lst in range(ivf.nlist)], dtype=np.int64)
    starts = np.zeros(ivf.nlist + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    dtype = np.uint32 if ivf.ntotal < 2**32 else np.int64
    positions: npt.NDArray[np.integer] = np.empty(ivf.ntotal, dtype=dtype)
    for lst in range(ivf.nlist):
        if sizes[lst]:
            ids = faiss.rev_swig_ptr(lists.get_ids(lst), int(sizes[lst]))
            positions[ids] = np.arange(starts[lst], starts[lst + 1])
    return Layout(positions=positions, list_starts=starts, bounds=bounds)


def save_layout(layout: Layout, file: BinaryIO, *, codes_offset: int) -> None:
    """The layout as an ``.npz``; ``codes_offset`` is where the codes start in their own file."""
    np.savez(
        file,
        positions=layout.positions,
        list_starts=layout.list_starts,
        bounds=layout.bounds,
        codes_offset=np.int64(codes_offset),
    )


def load_layout(path: Path) -> tuple[Layout, int]:
    with np.load(path, allow_pickle=False) as stored:
        layout = Layout(
            positions=stored["positions"],
            list_starts=stored["list_starts"],
            bounds=stored["bounds"].astype(np.float32),
        )
        return layout, int(stored["codes_offset"])
