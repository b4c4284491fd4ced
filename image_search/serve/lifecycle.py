"""The index being served: loaded on first use, refreshed when a new build is published.

One request refreshes while the others keep answering from the index they have; while none is
loaded, every request waits for the one load under way rather than failing beside it.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable

from botocore.exceptions import ClientError

from image_search.config import Settings
from image_search.errors import ImageSearchError, IndexNotReadyError
from image_search.storage import artefacts, s3
from image_search.storage.artefacts import LoadedBuild
from image_search.storage.catalog import Catalog

LOG = logging.getLogger(__name__)

# While no index is loaded, look for one at most this often, so a missing index or an S3 outage
# does not turn every request into a slow round of retries.
RETRY_SECONDS = 5.0


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
        self._current: LoadedBuild | None = None
        self._lock = threading.Lock()
        self._checked_at = -math.inf
        self._last_error: str | None = None

    def current(self) -> LoadedBuild:
        """The build to serve, loading or refreshing it when due; raises when there is none."""
        if self._current is None:
            with self._lock:
                if self._current is None and self._due():
                    self._refresh()
        elif self._due() and self._lock.acquire(blocking=False):
            try:
                if self._due():
                    self._refresh()
            finally:
                self._lock.release()
        if self._current is None:
            raise IndexNotReadyError(self._last_error or "no index has been published yet")
        return self._current

    def _due(self) -> bool:
        interval = RETRY_SECONDS if self._current is None else self.settings.refresh_seconds
        if self._current is not None and interval == 0:
            return False
        return time.monotonic() - self._checked_at >= interval

    def _refresh(self) -> None:
        self._checked_at = time.monotonic()
        s = self.settings
        build = "current.json"
        pointer = None
        try:
            client = self._client()
            pointer = artefacts.read_pointer(client, bucket=s.bucket, index_prefix=s.index_prefix)
            if pointer is None:
                self._last_error = f"no index published under s3://{s.bucket}/{s.index_prefix}"
                return
            if self._current and self._current.metadata.build_id == pointer.build_id:
                return
            build = f"build {pointer.build_id}"
            loaded = artefacts.load(
                client, bucket=s.bucket, pointer=pointer, cache_dir=s.index_cache_dir
            )
            self._check(loaded.metadata)
        except (ImageSearchError, ValueError, RuntimeError, OSError, ClientError) as exc:
            # RuntimeError: FAISS refusing a corrupt file; ValueError: bad JSON or metadata;
            # ClientError: NoSuchKey, a pointer naming files that are not there.
            failed = pointer.build_id if pointer else None
            self._failed(f"{build} could not be loaded: {exc}", pointer_build=failed)
            return
        self._current = loaded
        self._last_error = None
        LOG.info("serving build %s (%d images)", pointer.build_id, loaded.metadata.count)

    def _failed(self, reason: str, *, pointer_build: str | None) -> None:
        self._last_error = reason
        if pointer_build is not None:
            # Forget the local copy so the next attempt downloads it afresh.
            shutil.rmtree(self.settings.index_cache_dir / pointer_build, ignore_errors=True)
        if self._current:
            LOG.error("%s; still serving the previous index", reason)
        else:
            LOG.warning("%s", reason)
