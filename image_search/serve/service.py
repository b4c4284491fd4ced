"""The search service: text, image and similar-by-key queries over the served index.

Usable without HTTP: the API, the demo and the tests call it directly.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from image_search.config import Settings, get_settings
from image_search.errors import (
    ImageSearchError,
    ImageTooLargeError,
    IndexMismatchError,
    UnknownFolderError,
    UnknownKeyError,
)
from image_search.index import faiss_index
from image_search.model import images
from image_search.model.cache import embedder_for
from image_search.model.vectors import Vectors
from image_search.serve.folders import detect
from image_search.serve.lifecycle import ServedIndex
from image_search.serve.schemas import SearchHit
from image_search.serve.urls import ImageUrls
from image_search.storage import s3
from image_search.storage.artefacts import LoadedBuild
from image_search.storage.catalog import Catalog

if TYPE_CHECKING:
    from image_search.model.embedder import ClipEmbedder

LOG = logging.getLogger(__name__)

# An explicit "every folder": a text query then skips folder detection.
ALL_FOLDERS = "*"


@dataclass
class SearchResult:
    hits: list[SearchHit]
    folders: list[str] | None  # None = every folder
    detected: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds by stage


class SearchService:
    def __init__(self, settings: Settings, *, client: s3.S3Client | None = None) -> None:
        self.settings = settings
        self._client = client
        self.index = ServedIndex(settings, client=lambda: self.client, check=self._check_model)
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
        return embedder_for(self.settings)

    def warm(self) -> None:
        """Load the model and the index now (Lambda's init phase); failures are only logged."""
        try:
            self.embedder.load()
            self.current()
        except ImageSearchError as exc:
            LOG.warning("warm-up incomplete: %s", exc)

    def current(self) -> LoadedBuild:
        return self.index.current()

    def _check_model(self, metadata: Catalog) -> None:
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

    def _chosen(self, loaded: LoadedBuild, folder: str) -> list[str] | None:
        """The folder to search, or None for all of them ("" or "*")."""
        if folder in ("", ALL_FOLDERS):
            return None
        name = folder.strip("/")
        if name not in loaded.metadata.folders:
            known = ", ".join(loaded.metadata.folders) or "none"
            raise UnknownFolderError(
                f"folder {folder!r} is not in the index; known folders: {known}"
            )
        return [name]

    def _search(
        self,
        loaded: LoadedBuild,
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
        found = faiss_index.search(loaded.index, vector, k=wanted, ranges=ranges)
        searched = time.perf_counter()
        pairs = [
            (row, score)
            for row, score in zip(found.ids, found.scores, strict=True)
            if row != exclude
        ][:k]
        if min_score is not None:
            pairs = [(row, score) for row, score in pairs if score >= min_score]
        hits = [self._hit(loaded, rank, row, score) for rank, (row, score) in enumerate(pairs, 1)]
        timings = {"search": _ms(started, searched), "urls": _ms(searched, time.perf_counter())}
        return SearchResult(hits=hits, folders=folders, timings=timings)

    def _hit(self, loaded: LoadedBuild, rank: int, row: int, score: float) -> SearchHit:
        item = loaded.metadata.items[row]
        bucket = loaded.metadata.bucket
        score = min(1.0, max(-1.0, score))
        return SearchHit(
            rank=rank,
            score=score,
            distance=math.sqrt(max(0.0, 2.0 - 2.0 * score)),
            folder=item.folder,
            key=item.key,
            s3_path=f"s3://{bucket}/{item.key}",
            image_url=self._urls(bucket=bucket, key=item.key),
        )


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)


@lru_cache(maxsize=1)
def get_service() -> SearchService:
    """The process-wide service (created once; the model and index load lazily or at warm-up)."""
    return SearchService(get_settings())
