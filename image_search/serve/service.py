"""The search service: text, image and similar-by-key queries over the served index.

Usable without HTTP: the API, the demo and the tests call it directly. It answers with frozen
domain results; the routes turn them into HTTP bodies, headers and the request log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import numpy as np
from botocore.exceptions import ClientError

from image_search.artefacts.catalog import Catalog
from image_search.artefacts.photos import Photo
from image_search.artefacts.view import LoadedView, ViewCatalog
from image_search.config import Settings, get_settings
from image_search.errors import (
    ImageSearchError,
    ImageTooLargeError,
    IndexMismatchError,
    IndexNotReadyError,
    UnknownKeyError,
)
from image_search.index.search_index import Allowed
from image_search.model import images
from image_search.model.embedder import Embedder
from image_search.model.factory import embedder_for
from image_search.model.vectors import Vectors
from image_search.serve import cursors, filters, scope
from image_search.serve.combine import Query, combine
from image_search.serve.duplicates import DuplicateGroups, GroupPage
from image_search.serve.facets import Facets, facets
from image_search.serve.filters import NO_FILTER, PhotoFilter
from image_search.serve.folders import detect
from image_search.serve.image_tower import ImageTowerLoader
from image_search.serve.lifecycle import ServedIndex, lost_reason
from image_search.serve.text_cache import TextVectors
from image_search.serve.urls import ImageUrls
from image_search.storage import s3

LOG = logging.getLogger(__name__)

ALL_FOLDERS = scope.ALL_FOLDERS
# Uploads are decoded no larger than needed for this shorter side: 4 × CLIP's usual 224 px input,
# so the model's own resize still starts from every detail it can use.
UPLOAD_MIN_SIDE = 896


@dataclass(frozen=True, slots=True)
class Hit:
    key: str
    folder: str
    score: float  # cosine similarity, within [-1, 1]
    url: str  # where a client fetches the image: presigned or public
    photo: Photo | None = None  # None for builds made before photo fields


@dataclass(frozen=True, slots=True)
class ServedBuild:
    """The build that answered, as much of it as a caller reports (not its catalog)."""

    build_id: str
    count: int
    created_at: datetime
    bucket: str  # the configured bucket, whichever one the build's catalog names

    @classmethod
    def of(cls, metadata: ViewCatalog, *, bucket: str) -> ServedBuild:
        return cls(metadata.build_id, metadata.count, metadata.created_at, bucket)


@dataclass(frozen=True, slots=True)
class SearchResult:
    kind: str  # text, image or similar
    hits: tuple[Hit, ...]  # best first
    folders: tuple[str, ...] | None  # the folders searched; None = every folder
    prefix: str  # the key prefix searched, "" for any
    detected: bool  # text: the folders were detected from the query
    cached: bool | None  # text: the vector came from the cache; None for other kinds
    timings: Mapping[str, float]  # milliseconds by stage, in the order they ran
    build: ServedBuild


@dataclass(frozen=True, slots=True)
class QueryPage:
    """A page of a combined query: its results and the cursor of the next page (None: last)."""

    result: SearchResult
    offset: int  # results on the pages before (the first hit's rank is offset + 1)
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Embedded:
    """Vectors for a client to keep: unit length, ``dim`` wide, comparable with the builds
    whose ``model`` is the same."""

    model: str
    dim: int
    texts: Vectors  # (number of texts, dim), in their order
    images: Vectors  # (number of images, dim)


@dataclass(frozen=True, slots=True)
class _Found:
    """What ``_search`` found, before a query kind adds its own stages and flags."""

    hits: tuple[Hit, ...]
    timings: dict[str, float]


class SearchService:
    def __init__(self, settings: Settings, *, client: s3.S3Client | None = None) -> None:
        self.settings = settings
        self._client = client
        self.index = ServedIndex(settings, client=lambda: self.client, check=self._check_model)
        # The configured bucket, never the one a build's catalog names: a copied or replicated
        # bucket serves its own images (and a catalog is not trusted to pick what gets signed).
        self._urls = ImageUrls(
            lambda: self.client,
            bucket=settings.bucket,
            mode=settings.url_mode,
            expires=settings.presign_expires,
        )
        # Uploads are decoded and embedded by this many threads; the others wait their turn. The
        # same few threads every time also keep the freed pixels in few allocator arenas.
        self._image_workers = ThreadPoolExecutor(
            settings.max_concurrent_images, thread_name_prefix="image-search-upload"
        )
        self._texts = TextVectors(size=settings.text_cache_size)
        self.image_tower = ImageTowerLoader(lambda: self.embedder)
        self._duplicates = DuplicateGroups(settings, client=lambda: self.client, urls=self._urls)

    @property
    def client(self) -> s3.S3Client:
        if self._client is None:
            self._client = s3.make_client()
        return self._client

    @property
    def embedder(self) -> Embedder:
        return embedder_for(self.settings)

    def warm(self) -> None:
        """Load the text tower and the index now (Lambda's init phase), then arm the image
        tower's load (``image_tower.py``: it starts after the first text answer); failures are
        only logged.

        The index is fetched and opened in its own thread while the text tower loads here: the
        two are independent, and a cold start pays the longer of them rather than their sum.
        Text searches are answered from then on; uploads wait for the image tower.
        """
        self.index.start_loading()
        try:
            self.embedder.load_text()
            self.current()
        except ImageSearchError as exc:
            LOG.warning("warm-up incomplete: %s", exc)
        finally:
            self.image_tower.start_later()

    def warm_in_background(self) -> threading.Thread:
        """``warm`` in a thread: for a server whose port should open at once (uvicorn), and for
        Lambda's init, which imports the web framework meanwhile (``handlers/api.py``)."""
        # Made here, so the threads share one instance. A model that cannot be made is the
        # thread's to log ("warm-up incomplete"), as warm() does: never the caller's import.
        with contextlib.suppress(ImageSearchError):
            _ = self.embedder
        thread = threading.Thread(target=self.warm, name="image-search-warm", daemon=True)
        thread.start()
        return thread

    def current(self) -> LoadedView:
        return self.index.current()

    def checked(self) -> LoadedView:
        """``current()``, its lazily read files checked in S3: what ``/health`` answers from."""
        return self.index.verify()

    def _check_model(self, metadata: Catalog) -> None:
        # The identity, not IMAGE_SEARCH_MODEL: an export of the build's model serves it too.
        served = self.embedder.identity
        if metadata.model != served:
            raise IndexMismatchError(
                f"build {metadata.build_id} was made with model {metadata.model!r} but the service "
                f"runs {served!r}: rebuild the index or set IMAGE_SEARCH_MODEL"
            )
        if metadata.dim != self.embedder.dim:
            raise IndexMismatchError(
                f"build {metadata.build_id} has dim {metadata.dim}, model has {self.embedder.dim}"
            )

    # ---- queries ---------------------------------------------------------------------------

    def search_text(
        self,
        query: str,
        *,
        k: int,
        folder: str = "",
        prefix: str = "",
        chosen: PhotoFilter = NO_FILTER,
        min_score: float | None = None,
        caller: str = "",
    ) -> SearchResult:
        """``caller`` names whose cache of text vectors to use (see ``text_cache``); ``chosen``:
        only photos matching it (``filters.py``)."""
        loaded = self.current()
        where = scope.resolve(loaded.metadata, folder=folder, prefix=prefix)
        detected = False
        if not where.chosen and folder != scope.ALL_FOLDERS:
            named = detect(query, loaded.metadata.folders)
            if named:
                where = scope.of_folders(loaded.metadata, named)
                detected = True
        started = time.perf_counter()
        vector, cached = self._texts(self.embedder, query, caller=caller)
        embedded = time.perf_counter()
        found = self._search(loaded, vector, k=k, where=where, chosen=chosen, min_score=min_score)
        timings = {"embed": _ms(started, embedded), **found.timings}
        self.image_tower.answered()
        return self._result(
            "text", loaded, where, found, timings=timings, detected=detected, cached=cached
        )

    def search_image(
        self,
        data: bytes,
        *,
        k: int,
        folder: str = "",
        prefix: str = "",
        chosen: PhotoFilter = NO_FILTER,
        min_score: float | None = None,
    ) -> SearchResult:
        self._check_upload(len(data))
        loaded = self.current()
        where = scope.resolve(loaded.metadata, folder=folder, prefix=prefix)
        self.image_tower.wait()
        vector, (started, decoded, embedded) = self._image_workers.submit(
            self._embed_upload, data
        ).result()
        found = self._search(loaded, vector, k=k, where=where, chosen=chosen, min_score=min_score)
        timings = {
            "decode": _ms(started, decoded),
            "embed": _ms(decoded, embedded),
            **found.timings,
        }
        return self._result("image", loaded, where, found, timings=timings)

    def _check_upload(self, size: int) -> None:
        """Uploads of one request count together against the limit."""
        if size > self.settings.max_upload_bytes:
            raise ImageTooLargeError(
                f"upload is {size} bytes; the limit is {self.settings.max_upload_bytes}"
            )

    def embed(
        self, *, texts: Sequence[str] = (), images: Sequence[bytes] = (), caller: str = ""
    ) -> Embedded:
        """Unit vectors of ``texts`` and ``images``, as text search and the build make them."""
        self._check_upload(sum(len(data) for data in images))
        embedder = self.embedder
        uploads = [self._image_workers.submit(self._embed_upload, data) for data in images]
        found = [self._texts(embedder, text, caller=caller)[0] for text in texts]
        empty = np.zeros((0, embedder.dim), dtype=np.float32)
        return Embedded(
            model=embedder.identity,
            dim=embedder.dim,
            texts=np.vstack(found) if found else empty,
            images=np.vstack([upload.result()[0] for upload in uploads]) if uploads else empty,
        )

    def query(
        self, query: Query, *, k: int, cursor: str | None = None, caller: str = ""
    ) -> QueryPage:
        """A page of the images nearest the combination of ``query``'s parts (``combine.py``),
        the indexed images it names left out; ``cursor`` names a page after the first."""
        self._check_upload(query.upload_bytes)
        loaded = self.current()
        build_id, segment_ids = loaded.build_id, loaded.segment_ids
        fingerprint = query.fingerprint()
        after = None
        if cursor is not None:
            after = cursors.read(
                cursor, fingerprint=fingerprint, build_id=build_id, segment_ids=segment_ids
            )
        offset = 0 if after is None else after.offset
        k = min(k, cursors.MAX_DEPTH - offset)
        where = scope.resolve(loaded.metadata, folder=query.folder, prefix=query.prefix)
        # Every page searches the rows the first page could see (serve/cursors.py).
        seen = len(segment_ids) if after is None else after.segments
        started = time.perf_counter()
        vectors, named = self._part_vectors(loaded, query, caller=caller)
        vector = combine(vectors, query.weights)
        embedded = time.perf_counter()
        allowed = _allowed(loaded, where, query.filters)
        allowed = scope.before(allowed, loaded.metadata.end(seen), total=len(loaded.metadata))
        filtered = time.perf_counter()
        # One more than the page, to know whether another follows.
        wanted = offset + k + len(named) + 1
        with self._reading(loaded):
            found = filters.search(loaded.index, vector, k=wanted, allowed=allowed)
        searched = time.perf_counter()
        pairs, more = cursors.page(found.ids, found.scores, after=after, exclude=named, k=k)
        # An approximate index asked deeper may rank a few results above the last page's end,
        # which leaves this page short: while the search was not exhausted, more may follow.
        more = more or len(found.ids) >= wanted
        if query.min_score is not None:
            kept = [(row, score) for row, score in pairs if score >= query.min_score]
            more, pairs = more and len(kept) == len(pairs), kept
        next_cursor = None
        if more and pairs and offset + len(pairs) < cursors.MAX_DEPTH:
            last_row, last_score = pairs[-1]
            last = cursors.After(
                build_id,
                offset + len(pairs),
                last_row,
                last_score,
                segments=seen,
                last=segment_ids[seen - 1] if seen else "",
            )
            next_cursor = cursors.make(last, fingerprint=fingerprint)
        hits = tuple(self._hit(loaded, row, score) for row, score in pairs)
        timings = {
            "embed": _ms(started, embedded),
            **({"filter": _ms(embedded, filtered)} if query.filters else {}),
            "search": _ms(filtered, searched),
            "urls": _ms(searched, time.perf_counter()),
        }
        found_page = _Found(hits=hits, timings=timings)
        result = self._result("query", loaded, where, found_page, timings=timings)
        return QueryPage(result=result, offset=offset, next_cursor=next_cursor)

    def _part_vectors(
        self, loaded: LoadedView, query: Query, *, caller: str
    ) -> tuple[Vectors, set[int]]:
        """Each part's embedding, in ``query.parts`` order, and the rows of the indexed images
        it names. Uploads are decoded and embedded by the upload threads meanwhile."""
        parts = query.parts
        uploads = {
            at: self._image_workers.submit(self._embed_upload, part.image)
            for at, part in enumerate(parts)
            if part.image is not None
        }
        vectors: list[Vectors] = []
        named: set[int] = set()
        for at, part in enumerate(parts):
            if part.text is not None:
                vectors.append(self._texts(self.embedder, part.text, caller=caller)[0])
            elif part.key is not None:
                row = loaded.rows.get(part.key)
                if row is None:
                    raise UnknownKeyError(f"{part.key!r} is not in the index")
                named.add(row)
                with self._reading(loaded):
                    vectors.append(loaded.index.vector(row))
            else:
                vectors.append(uploads[at].result()[0])
        return np.vstack(vectors), named

    def _embed_upload(self, data: bytes) -> tuple[Vectors, tuple[float, float, float]]:
        started = time.perf_counter()
        picture = images.decode(
            data, max_pixels=self.settings.max_image_pixels, min_side=UPLOAD_MIN_SIDE
        )
        decoded = time.perf_counter()
        vector = self.embedder.embed_images([picture])
        return vector, (started, decoded, time.perf_counter())

    def similar(
        self,
        key: str,
        *,
        k: int,
        folder: str = "",
        prefix: str = "",
        chosen: PhotoFilter = NO_FILTER,
        min_score: float | None = None,
    ) -> SearchResult:
        """Neighbours of an indexed image from its stored vector (no re-embedding), not itself."""
        loaded = self.current()
        where = scope.resolve(loaded.metadata, folder=folder, prefix=prefix)
        row = loaded.rows.get(key)
        if row is None:
            raise UnknownKeyError(f"{key!r} is not in the index")
        with self._reading(loaded):
            vector = loaded.index.vector(row)
        found = self._search(
            loaded, vector, k=k, where=where, chosen=chosen, min_score=min_score, exclude=row
        )
        return self._result("similar", loaded, where, found, timings=found.timings)

    @contextmanager
    def _reading(self, loaded: LoadedView) -> Iterator[None]:
        """Queries read some of a build's files lazily (ivf-pq's re-rank codes). When they are
        gone from S3 (a newer build pruned it), answer 503 and load the current build now."""
        try:
            yield
        except ClientError as exc:
            if not s3.is_missing(exc):
                raise
            reason = lost_reason(loaded)
            self.index.lost(loaded, reason=reason)
            raise IndexNotReadyError(reason) from exc

    def key_from_s3_path(self, s3_path: str) -> str:
        prefix = f"s3://{self.settings.bucket}/"
        if not s3_path.startswith(prefix):
            raise UnknownKeyError(f"{s3_path!r} is not in bucket {self.settings.bucket!r}")
        return s3_path[len(prefix) :]

    def folders(self, parent: str = "") -> list[tuple[str, int]]:
        """The top-level folders, or the sub-folders directly under ``parent``, with counts."""
        return scope.sub_folders(self.current().metadata, parent)

    def facets(
        self, *, folder: str = "", prefix: str = "", chosen: PhotoFilter = NO_FILTER
    ) -> tuple[ServedBuild, Facets]:
        """Counts per camera and per year in the folder or prefix (``facets.py``)."""
        loaded = self.current()
        where = scope.resolve(loaded.metadata, folder=folder, prefix=prefix)
        counted = facets(loaded.metadata, ranges=where.ranges, chosen=chosen)
        return ServedBuild.of(loaded.metadata, bucket=self.settings.bucket), counted

    def duplicates(
        self,
        *,
        min_score: float | None = None,
        folder: str = "",
        prefix: str = "",
        offset: int = 0,
        limit: int = 20,
    ) -> GroupPage:
        """A page of the build's near-duplicate groups with an image in the folder or prefix."""
        loaded = self.current()
        where = scope.resolve(loaded.metadata, folder=folder, prefix=prefix)
        return self._duplicates.page(
            loaded, where=where, min_score=min_score, offset=offset, limit=limit
        )

    def _search(
        self,
        loaded: LoadedView,
        vector: Vectors,
        *,
        k: int,
        where: scope.Scope,
        chosen: PhotoFilter,
        min_score: float | None,
        exclude: int | None = None,
    ) -> _Found:
        started = time.perf_counter()
        allowed = _allowed(loaded, where, chosen)
        filtered = time.perf_counter()
        # One more than asked when a row is excluded, so excluding it never leaves k - 1.
        wanted = k + (exclude is not None)
        with self._reading(loaded):
            found = filters.search(loaded.index, vector, k=wanted, allowed=allowed)
        searched = time.perf_counter()
        pairs = [
            (row, score)
            for row, score in zip(found.ids, found.scores, strict=True)
            if row != exclude
        ][:k]
        if min_score is not None:
            pairs = [(row, score) for row, score in pairs if score >= min_score]
        hits = tuple(self._hit(loaded, row, score) for row, score in pairs)
        timings = {
            **({"filter": _ms(started, filtered)} if chosen else {}),
            "search": _ms(filtered, searched),
            "urls": _ms(searched, time.perf_counter()),
        }
        return _Found(hits=hits, timings=timings)

    def _hit(self, loaded: LoadedView, row: int, score: float) -> Hit:
        item = loaded.metadata.items[row]
        url = self._urls(item.key)
        photos = loaded.metadata.photos
        return Hit(
            key=item.key,
            folder=item.folder,
            score=min(1.0, max(-1.0, score)),
            url=url,
            photo=None if photos is None else photos.photo(row),
        )

    def _result(
        self,
        kind: str,
        loaded: LoadedView,
        where: scope.Scope,
        found: _Found,
        *,
        timings: dict[str, float],
        detected: bool = False,
        cached: bool | None = None,
    ) -> SearchResult:
        return SearchResult(
            kind=kind,
            hits=found.hits,
            folders=None if where.folders is None else tuple(where.folders),
            prefix=where.prefix,
            detected=detected,
            cached=cached,
            timings=timings,
            build=ServedBuild.of(loaded.metadata, bucket=self.settings.bucket),
        )


def _allowed(loaded: LoadedView, where: scope.Scope, chosen: PhotoFilter) -> Allowed:
    """The rows a search may return: the scope's ranges, or the matching rows inside them."""
    return chosen.rows(loaded.metadata, where.ranges) if chosen else where.ranges


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)


@lru_cache(maxsize=1)
def get_service() -> SearchService:
    """The process-wide service (created once; the model and index load lazily or at warm-up)."""
    return SearchService(get_settings())
