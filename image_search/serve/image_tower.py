"""The image tower loads behind the text tower and the index, so a cold start answers text first.

A cold start loads the text tower and the index (in parallel), then arms this loader: the thread
starts once the first text search has been answered, or ``DELAY_SECONDS`` later if none comes,
or at once for an upload. Opening the image tower is a second or more of CPU (ViT-B/32 fp32's
weights are repacked), and started as the port opened it took a core from that first answer:
1-2 s of a 4-6 s cold start on 2 busy cores (issue 23). On Lambda the init phase ends once armed
and the thread runs during the first invocations. An upload waits for the load, up to
``WAIT_SECONDS``, then gets a 503 it can retry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal

from image_search.errors import ImageModelLoadingError, ImageSearchError
from image_search.model.embedder import Embedder

LOG = logging.getLogger(__name__)

# Long enough for any image tower we export to open on a cold machine (ViT-B/32 fp32's 351 MB
# is mapped, not read), short enough to answer well inside API Gateway's 29 s limit.
WAIT_SECONDS = 10.0
# An idle server loads the image tower this long after text answers are ready, with no request.
DELAY_SECONDS = 2.0

State = Literal["loading", "ready"]


class ImageTowerLoader:
    def __init__(self, embedder: Callable[[], Embedder], *, wait: float | None = None) -> None:
        self._embedder = embedder
        self._wait = WAIT_SECONDS if wait is None else wait
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    def start_later(self, delay: float | None = None) -> None:
        """Arm the loader: ``answered()`` or an upload starts it, else a timer after ``delay``
        seconds (``DELAY_SECONDS``)."""
        with self._lock:
            if self._thread is not None or self._timer is not None:
                return
            self._timer = threading.Timer(DELAY_SECONDS if delay is None else delay, self.start)
            self._timer.name = "image-search-image-tower-timer"
            self._timer.daemon = True
            self._timer.start()

    def answered(self) -> None:
        """A text search has been answered: start the armed load now (not armed: nothing)."""
        if self._timer is not None and self._thread is None:
            self.start()

    def start(self) -> None:
        """Load the image tower in a thread (once; later calls do nothing)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._thread is None:
                # Not a daemon: an interpreter that exits (a server stopped right after its first
                # answer) waits for the load in flight, since ONNX Runtime torn down beneath a
                # session being opened aborts the process (SIGABRT, "terminate called").
                self._thread = threading.Thread(target=self._load, name="image-search-image-tower")
                self._thread.start()

    @property
    def state(self) -> State:
        """``ready`` once the tower is in memory; ``loading`` before (and before any start: the
        first upload then loads it)."""
        return "ready" if self._embedder().image_ready else "loading"

    def wait(self) -> None:
        """Return once uploads can be embedded; ``ImageModelLoadingError`` (503) if the load in
        flight outlasts the wait. Not armed nor started, ``embed_images`` loads the tower itself."""
        if self._embedder().image_ready:
            return
        self.answered()  # armed: an upload starts the load at once
        thread = self._thread
        if thread is None:
            return
        thread.join(self._wait)
        if thread.is_alive():
            raise ImageModelLoadingError(
                "the image model is still loading after a cold start (text searches already "
                "answer): retry the upload in a few seconds"
            )

    def _load(self) -> None:
        try:
            self._embedder().load()
        except ImageSearchError as exc:  # the upload that needs it reports it, as a 503
            LOG.warning("image tower not loaded: %s", exc)
