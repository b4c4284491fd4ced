"""The index being served: loaded once, then refreshed off the request path.

Requests never wait for a refresh. A check of ``current.json`` runs in one background thread at a
time, started by the first request after the interval or, on a long-lived server, by a timer. It
is a conditional GET (If-None-Match on the ETag last seen): an unchanged pointer costs a round
trip, so servers can look every ``IMAGE_SEARCH_POLL_SECONDS``. When the pointer names the build
being served with more segments, only the new segments are fetched and the view extended; a new
build is loaded whole, with its segments. Requests keep answering from the view they have, and
the new one replaces it in one assignment. So at most two builds are held: the one serving and
the one loading. Only while no build is loaded yet does a request wait for the load under way,
for at most ``FIRST_LOAD_WAIT_SECONDS``, and then answers 503.

On Lambda the thread runs only while an invocation does (the environment is frozen between
them): a load spans as many invocations as it needs while they answer from the old build, and a
download cut off by a long freeze fails, is logged, and is tried again at the next check.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import ClientError

from image_search.artefacts import loader
from image_search.artefacts.catalog import Catalog
from image_search.artefacts.location import IndexLocation, is_build_id, local_folder
from image_search.artefacts.manifest import Pointer
from image_search.artefacts.view import LoadedSegment, LoadedView
from image_search.config import Settings
from image_search.errors import (
    ConfigError,
    ImageSearchError,
    IndexMismatchError,
    IndexNotReadyError,
)
from image_search.storage import s3

LOG = logging.getLogger(__name__)

# While no index is loaded, look for one at most this often, so a missing index or an S3 outage
# does not turn every request into a slow round of retries.
RETRY_SECONDS = 5.0
# How long a request waits for the first load before answering 503: well inside the search
# function's 28 s timeout, leaving time to embed and answer.
FIRST_LOAD_WAIT_SECONDS = 20.0


class ServedIndex:
    def __init__(
        self,
        settings: Settings,
        *,
        client: Callable[[], s3.S3Client],
        check: Callable[[Catalog], None],
    ) -> None:
        self.settings = settings
        self._client = client
        self._check = check  # raises when a build does not fit the running model
        self._current: LoadedView | None = None
        self._pointer: Pointer | None = None  # the current build's
        self._etag: str | None = None  # of the last pointer read: asked If-None-Match
        self._retry_at = -math.inf  # when a pointer that did not fully load is read again
        self._guard = threading.Lock()  # starting the worker
        self._worker: threading.Thread | None = None
        self._checked_at = -math.inf
        self._last_error: str | None = None
        self._misconfigured = False  # the last error was the settings' (no retry will help)

    @property
    def loaded(self) -> LoadedView | None:
        """The build being served, if any, without starting a check."""
        return self._current

    @property
    def problem(self) -> str | None:
        """Why the last check did not bring the published build in while another is served
        (a damaged or newer build, S3 unreachable); None when it did or nothing is served."""
        return self._last_error if self._current is not None else None

    def current(self) -> LoadedView:
        """The build to serve; starts a background check when one is due. Raises when none."""
        loaded = self._current
        if loaded is not None:
            self._start_if_due()
            return loaded
        worker = self._start_if_due()
        if worker is not None:
            worker.join(FIRST_LOAD_WAIT_SECONDS)
        loaded = self._current
        if loaded is not None:
            return loaded
        if worker is not None and worker.is_alive():
            raise IndexNotReadyError("the index is still loading; try again in a few seconds")
        if self._misconfigured:
            raise ConfigError(self._last_error or "the service is misconfigured")
        raise IndexNotReadyError(self._last_error or "no index has been published yet")

    def start_loading(self) -> None:
        """Start the first check now, in the background, unless one ran or is running."""
        self._start_if_due()

    def refresh(self) -> None:
        """Check ``current.json`` now and load the build it names if new; returns when done."""
        asked = time.monotonic()
        while True:
            worker = self._start(force=True)
            assert worker is not None  # forced: one runs
            worker.join()
            if self._checked_at >= asked:  # that check began after this call
                return

    def keep_fresh(self) -> Callable[[], None]:
        """Check from a timer thread as well, with or without traffic (long-lived servers).

        Returns the function that stops it.
        """
        stop = threading.Event()

        def run() -> None:
            while True:
                worker = self._start_if_due()
                if worker is not None:
                    worker.join()
                if stop.wait(self._seconds_to_next_check()):
                    return

        threading.Thread(target=run, name="image-search-refresh-timer", daemon=True).start()
        return stop.set

    def lost(self, loaded: LoadedView, *, reason: str) -> None:
        """``loaded``'s files are gone from S3 (pruned while served): stop serving it and check
        the pointer now, so the next requests wait for the current build as at a cold start."""
        with self._guard:
            if self._current is not loaded:
                return  # replaced meanwhile
            self._current, self._pointer, self._etag = None, None, None
            self._last_error, self._misconfigured = reason, False
        LOG.error("%s", reason)
        with contextlib.suppress(IndexMismatchError):  # its copy is incomplete for good
            folder = local_folder(self.settings.index_cache_dir, loaded.metadata.build_id)
            shutil.rmtree(folder, ignore_errors=True)
        self._start(force=True)

    def verify(self) -> LoadedView:
        """``current()``, after checking that the files the build still reads lazily are in S3:
        what ``/health`` asks, so it never says 200 while searches would fail."""
        loaded, pointer = self.current(), self._pointer
        if pointer is None or loaded is not self._current:
            return loaded
        s = self.settings
        for key in loader.lazy_keys(pointer, cache_dir=s.index_cache_dir):
            try:
                s3.get_range(self._client(), bucket=s.bucket, key=key, start=0, end=1)
            except ClientError as exc:
                if not s3.is_missing(exc):
                    raise
                reason = lost_reason(loaded)
                self.lost(loaded, reason=reason)
                raise IndexNotReadyError(reason) from exc
        return loaded

    # ---- the background check ----------------------------------------------------------

    def _interval(self) -> float | None:
        """Seconds between checks; None: no more checks once a build is served."""
        if self._current is None:
            return RETRY_SECONDS
        return check_interval(self.settings)

    def _due(self) -> bool:
        interval = self._interval()
        return interval is not None and time.monotonic() - self._checked_at >= interval

    def _seconds_to_next_check(self) -> float | None:
        interval = self._interval()
        if interval is None:
            return None  # never: wait until stopped
        return max(0.05, interval - (time.monotonic() - self._checked_at))

    def _start_if_due(self) -> threading.Thread | None:
        """The check under way, or a new one if due; None when neither."""
        return self._start(force=False)

    def _start(self, *, force: bool) -> threading.Thread | None:
        with self._guard:
            if self._worker is not None and self._worker.is_alive():
                return self._worker
            if not (force or self._due()):
                return None
            self._checked_at = time.monotonic()
            self._worker = threading.Thread(
                target=self._run_check, name="image-search-refresh", daemon=True
            )
            self._worker.start()
            return self._worker

    def _run_check(self) -> None:
        try:
            self._check_pointer()
        except Exception:  # a bug here must not end refreshing for good
            LOG.exception("index refresh failed")

    def _check_pointer(self) -> None:
        s = self.settings
        build = "current.json"
        pointer = None
        try:
            where = IndexLocation(self._client(), s.bucket, s.index_prefix)
            found = loader.read_pointer_if_changed(where, etag=self._known_etag())
            if isinstance(found, s3.Unchanged):
                return
            if found is None:
                self._last_error = f"no index published under s3://{s.bucket}/{s.index_prefix}"
                self._misconfigured = False
                return
            pointer, self._etag = found
            current = self._current
            if current is None or current.build_id != pointer.build_id:
                build = f"build {pointer.build_id}"
                base = loader.load_build(where, pointer=pointer, cache_dir=s.index_cache_dir)
                self._check(base.metadata)
                current = LoadedView.of(base)
            view, problem = self._with_segments(where, current, pointer)
        except (ImageSearchError, ValueError, RuntimeError, OSError, ClientError) as exc:
            # RuntimeError: FAISS refusing a corrupt file; ValueError: bad JSON or metadata;
            # ClientError: NoSuchKey, a pointer naming files that are not there.
            failed = pointer.build_id if pointer else None
            self._misconfigured = isinstance(exc, ConfigError)
            self._failed(f"{build} could not be loaded: {exc}", pointer_build=failed)
            return
        if view is not self._current:
            new_build = self._current is None or self._current.base is not view.base
            self._current, self._pointer = view, pointer
            LOG.info(
                "serving build %s with %d segments (%d images)",
                pointer.build_id,
                len(view.segments),
                view.metadata.count,
            )
            if new_build:
                remove_older_copies(s.index_cache_dir, serving=pointer.build_id)
            if view.metadata.changes > s.compact_after_images:
                LOG.warning(
                    "%d images added or deleted in segments on build %s, more than "
                    "IMAGE_SEARCH_COMPACT_AFTER_IMAGES (%d): a build would fold them in and make "
                    "searches faster",
                    view.metadata.changes,
                    pointer.build_id,
                    s.compact_after_images,
                )
        self._last_error, self._misconfigured = problem, False
        if problem is not None:
            self._retry_at = time.monotonic() + s.refresh_seconds
            LOG.error("%s; serving the segments before it", problem)

    def _with_segments(
        self, where: IndexLocation, view: LoadedView, pointer: Pointer
    ) -> tuple[LoadedView, str | None]:
        """``view`` with the segments ``pointer`` lists, fetching only those it does not hold;
        and why a segment could not be loaded (the view then holds those before it)."""
        refs = pointer.segments or []
        wanted = [ref.segment_id for ref in refs]
        if list(view.segment_ids) == wanted:
            return view, None
        held = {segment.segment_id: segment for segment in view.segments}
        missing = [ref for ref in refs if ref.segment_id not in held]
        read = loader.load_segments(where, missing, base=view.base.metadata)
        held.update(
            (segment.segment_id, LoadedSegment.of(segment, vectors))
            for segment, vectors in read.loaded
        )
        applied = []
        for segment_id in wanted:
            if segment_id not in held:
                break  # a later segment never applies without the ones before it
            applied.append(held[segment_id])
        if wanted[: len(view.segment_ids)] != list(view.segment_ids):
            return LoadedView.of(view.base, applied), read.problem
        more = applied[len(view.segment_ids) :]
        return (view.extended(more) if more else view), read.problem

    def _known_etag(self) -> str | None:
        """The ETag to ask If-None-Match: none before a build is served, nor when the pointer
        last read did not fully load and ``IMAGE_SEARCH_REFRESH_SECONDS`` have passed since (a
        newer pointer is read at once anyway)."""
        if self._current is None:
            return None
        if self._last_error is not None and time.monotonic() >= self._retry_at:
            return None
        return self._etag

    def _failed(self, reason: str, *, pointer_build: str | None) -> None:
        self._last_error = reason
        self._retry_at = time.monotonic() + self.settings.refresh_seconds
        if pointer_build is not None and is_build_id(pointer_build):
            # Forget the local copy so the next attempt downloads it afresh: only ever a folder
            # named like a build directly inside the cache, never where a pointer says.
            with contextlib.suppress(IndexMismatchError):
                folder = local_folder(self.settings.index_cache_dir, pointer_build)
                shutil.rmtree(folder, ignore_errors=True)
        if self._current:
            LOG.error("%s; still serving the previous index", reason)
        else:
            LOG.warning("%s", reason)


def check_interval(settings: Settings) -> float | None:
    """Seconds between checks of ``current.json`` once a build is served: the poll interval,
    or ``IMAGE_SEARCH_REFRESH_SECONDS`` when shorter or when polling is off (0); None when
    refreshing is off (``IMAGE_SEARCH_REFRESH_SECONDS`` 0)."""
    if settings.refresh_seconds == 0:
        return None
    if settings.poll_seconds == 0:
        return settings.refresh_seconds
    return min(settings.poll_seconds, settings.refresh_seconds)


def remove_older_copies(cache_dir: Path, *, serving: str) -> None:
    """Delete the local copies of builds older than ``serving``, so the disk (Lambda's /tmp)
    holds one build. Newer ones stay: another process sharing the folder may be fetching one.
    """
    try:
        folders = [p for p in cache_dir.iterdir() if p.is_dir() and is_build_id(p.name)]
    except OSError:
        return
    for folder in folders:
        if folder.name < serving:
            shutil.rmtree(folder, ignore_errors=True)
            LOG.info("removed the local copy of build %s", folder.name)


def lost_reason(loaded: LoadedView) -> str:
    return (
        f"build {loaded.metadata.build_id}'s files are gone from S3 (pruned by a newer build?): "
        "loading the current build"
    )
