"""The search service: holds the current index and the model, answers searches, hot-reloads.

Usable without HTTP: the API, the demo and the tests call it directly.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import faiss
from botocore.exceptions import ClientError

from image_search.config import Settings, get_settings
from image_search.errors import (
    ImageSearchError,
    ImageTooLargeError,
    IndexMismatchError,
    IndexNotReadyError,
    UnknownFolderError,
    UnknownKeyError,
)
from image_search.index import faiss_index
from image_search.model import images
from image_search.model.vectors import Vectors
from image_search.serve.folders import detect
from image_search.serve.urls import ImageUrls
from image_search.storage import artefacts as store
from image_search.storage import s3
from image_search.storage.manifest import Metadata

if TYPE_CHECKING:
    from image_search.model.embedder import ClipEmbedder

LOG = logging.getLogger(__name__)

# While no index is loaded, look for one at most this often, so a missing index or an S3 outage
# does not turn every request into a slow round of retries.
RETRY_SECONDS = 5.0
# An explicit "every folder": a text query then skips folder detection.
ALL_FOLDERS = "*"


@dataclass(frozen=True)
class LoadedIndex:
    metadata: Metadata
    index: faiss.Index
    rows: dict[str, int]  # key → row

    @classmethod
    def of(cls, published: store.Published) -> LoadedIndex:
        rows = {item.key: row for row, item in enumerate(published.metadata.items)}
        return cls(published.metadata, published.index, rows)


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    distance: float
    folder: str
    key: str
    s3_path: str
    image_url: str


@dataclass
class SearchResult:
    hits: list[Hit]
    folders: list[str] | None  # None = every folder
    detected: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds by stage


@lru_cache(maxsize=4)
def embedder_for(source: str, device: str, batch_size: int, cache_dir: str) -> ClipEmbedder:
    """One model per process and configuration (Lambda reuses it across invocations)."""
    from image_search.model.embedder import ClipEmbedder

    return ClipEmbedder(source=source, device=device, batch_size=batch_size, cache_dir=cache_dir)  # type: ignore[arg-type]


class SearchService:
    def __init__(self, settings: Settings, *, client: s3.S3Client | None = None) -> None:
        self.settings = settings
        self._client = client
        self._current: LoadedIndex | None = None
        self._lock = threading.Lock()
        self._checked_at = -math.inf
        self._last_error: str | None = None
        self._urls = ImageUrls(
            lambda: self.client, mode=settings.url_mode, expires=settings.presign_expires
        )

    @property
    def client(self) -> s3.S3Client:
        if self._client is None:
            self._client = s3.make_client()
        return self._client

    @property
    def embedder(self) -> ClipEmbedder:
        s = self.settings
        return embedder_for(s.model, s.device, s.batch_size, str(s.model_cache_dir))

    # ---- index lifecycle -------------------------------------------------------------------

    def warm(self) -> None:
        """Load the model and the index now (Lambda's init phase); failures are only logged."""
        try:
            self.embedder.load()
            self.current()
        except ImageSearchError as exc:
            LOG.warning("warm-up incomplete: %s", exc)

    def current(self) -> LoadedIndex:
        """The index to serve, loading or refreshing it when due; raises when there is none."""
        if self._current is None:
            # Wait for a load another request may have under way rather than fail beside it.
            with self._lock:
                if self._current is None and self._due():
                    self._refresh()
        elif self._due() and self._lock.acquire(blocking=False):
            # One request refreshes; the others keep serving the index they have.
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
            pointer = store.read_pointer(self.client, bucket=s.bucket, index_prefix=s.index_prefix)
            if pointer is None:
                self._last_error = f"no index published under s3://{s.bucket}/{s.index_prefix}"
                return
            if self._current and self._current.metadata.build_id == pointer.build_id:
                return
            build = f"build {pointer.build_id}"
            published = store.load(
                self.client, bucket=s.bucket, pointer=pointer, cache_dir=s.index_cache_dir
            )
            self._check_model(published.metadata)
        except (ImageSearchError, ValueError, RuntimeError, OSError, ClientError) as exc:
            # RuntimeError: FAISS refusing a corrupt file; ValueError: bad JSON or metadata;
            # ClientError: NoSuchKey, a pointer naming files that are not there (was a 500).
            self._last_error = f"{build} could not be loaded: {exc}"
            if pointer is not None:
                # Forget the local copy so the next attempt downloads it afresh.
                shutil.rmtree(s.index_cache_dir / pointer.build_id, ignore_errors=True)
            level = logging.ERROR if self._current else logging.WARNING
            LOG.log(
                level,
                "%s%s",
                self._last_error,
                "; still serving the previous index" if self._current else "",
            )
            return
        self._current = LoadedIndex.of(published)
        self._last_error = None
        LOG.info("serving build %s (%d images)", pointer.build_id, published.metadata.count)

    def _check_model(self, metadata: Metadata) -> None:
        if metadata.model != self.settings.model:
            raise IndexMismatchError(
                f"build {metadata.build_id} was made with model {metadata.model!r} but the service "
                f"runs {self.settings.model!r}: rebuild the index or set IMAGE_SEARCH_MODEL"
            )
        if metadata.dim != self.embedder.dim:
            raise IndexMismatchError(
                f"build {metadata.build_id} has dim {metadata.dim}, model has {self.embedder.dim}"
            )

    # ---- queries ---------------------------------------------------------------------------

    def search_text(
        self, query: str, *, k: int, folder: str = "", min_score: float | None = None
    ) -> SearchResult:
        loaded = self.current()
        detected = False
        chosen = self._chosen(loaded, folder)
        if not folder:
            chosen = detect(query, loaded.metadata.folders) or None
            detected = chosen is not None
        started = time.perf_counter()
        vector = self.embedder.embed_texts([query])
        embedded = time.perf_counter()
        result = self._search(loaded, vector, k=k, folders=chosen, min_score=min_score)
        result.detected = detected
        result.timings = {"embed": _ms(started, embedded), **result.timings}
        return result

    def search_image(
        self, data: bytes, *, k: int, folder: str = "", min_score: float | None = None
    ) -> SearchResult:
        if len(data) > self.settings.max_upload_bytes:
            raise ImageTooLargeError(
                f"upload is {len(data)} bytes; the limit is {self.settings.max_upload_bytes}"
            )
        loaded = self.current()
        chosen = self._chosen(loaded, folder)
        started = time.perf_counter()
        picture = images.decode(data, max_pixels=self.settings.max_image_pixels)
        decoded = time.perf_counter()
        vector = self.embedder.embed_images([picture])
        embedded = time.perf_counter()
        result = self._search(loaded, vector, k=k, folders=chosen, min_score=min_score)
        result.timings = {
            "decode": _ms(started, decoded),
            "embed": _ms(decoded, embedded),
            **result.timings,
        }
        return result

    def similar(
        self, key: str, *, k: int, folder: str = "", min_score: float | None = None
    ) -> SearchResult:
        """Neighbours of an indexed image from its stored vector (no re-embedding), not itself."""
        loaded = self.current()
        chosen = self._chosen(loaded, folder)
        row = loaded.rows.get(key)
        if row is None:
            raise UnknownKeyError(f"{key!r} is not in the index")
        vector = faiss_index.vector(loaded.index, row)
        return self._search(loaded, vector, k=k, folders=chosen, min_score=min_score, exclude=row)

    def key_from_s3_path(self, s3_path: str) -> str:
        prefix = f"s3://{self.settings.bucket}/"
        if not s3_path.startswith(prefix):
            raise UnknownKeyError(f"{s3_path!r} is not in bucket {self.settings.bucket!r}")
        return s3_path[len(prefix) :]

    def folders(self) -> list[tuple[str, int]]:
        return [
            (name, end - start) for name, (start, end) in self.current().metadata.folders.items()
        ]

    def _chosen(self, loaded: LoadedIndex, folder: str) -> list[str] | None:
        """The folder to search, or None for all of them ("" or "*")."""
        return None if folder in ("", ALL_FOLDERS) else [self._known_folder(loaded, folder)]

    def _known_folder(self, loaded: LoadedIndex, folder: str) -> str:
        name = folder.strip("/")
        if name not in loaded.metadata.folders:
            known = ", ".join(loaded.metadata.folders) or "none"
            raise UnknownFolderError(
                f"folder {folder!r} is not in the index; known folders: {known}"
            )
        return name

    def _search(
        self,
        loaded: LoadedIndex,
        vector: Vectors,
        *,
        k: int,
        folders: list[str] | None,
        min_score: float | None,
        exclude: int | None = None,
    ) -> SearchResult:
        ranges = [loaded.metadata.folders[name] for name in folders] if folders else None
        started = time.perf_counter()
        # One more than asked when a row is excluded, so excluding it never leaves k - 1.
        wanted = k + (exclude is not None)
        hits = faiss_index.search(loaded.index, vector, k=wanted, ranges=ranges)
        searched = time.perf_counter()
        pairs = [
            (row, score) for row, score in zip(hits.ids, hits.scores, strict=True) if row != exclude
        ][:k]
        if min_score is not None:
            pairs = [(row, score) for row, score in pairs if score >= min_score]
        result = [self._hit(loaded, rank, row, score) for rank, (row, score) in enumerate(pairs, 1)]
        timings = {"search": _ms(started, searched), "urls": _ms(searched, time.perf_counter())}
        return SearchResult(hits=result, folders=folders, timings=timings)

    def _hit(self, loaded: LoadedIndex, rank: int, row: int, score: float) -> Hit:
        item = loaded.metadata.items[row]
        bucket = loaded.metadata.bucket
        url = self._urls(bucket=bucket, key=item.key)
        score = min(1.0, max(-1.0, score))
        return Hit(
            rank=rank,
            score=score,
            distance=math.sqrt(max(0.0, 2.0 - 2.0 * score)),
            folder=item.folder,
            key=item.key,
            s3_path=f"s3://{bucket}/{item.key}",
            image_url=url,
        )


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)


@lru_cache(maxsize=1)
def get_service() -> SearchService:
    """The process-wide service (created once; the model and index load lazily or at warm-up)."""
    return SearchService(get_settings())
