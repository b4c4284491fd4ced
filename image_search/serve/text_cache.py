"""Text query vectors kept per model and per caller, so a repeated query costs no forward pass.

A 512-d vector is 2 KiB: the default 1,024 entries hold 2 MiB, per API key. Keyed by the model's
source as well as the text, so two models in one process never share vectors. Each caller (an
API key) has a cache of its own: a hit answers faster, by the embedding's time, so a shared cache
would let one client tell from its own response times (or from the ``embed`` stage in
``Server-Timing``) whether another recently searched the same words.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache

from image_search.model.embedder import Embedder
from image_search.model.vectors import Vectors


class TextVectors:
    def __init__(self, *, size: int) -> None:
        self._size = size
        # One LRU a caller, so one caller's queries can neither hit nor evict another's.
        self._caches: dict[str, LRUCache[tuple[str, str], Vectors]] = {}
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def __call__(self, embedder: Embedder, query: str, *, caller: str = "") -> tuple[Vectors, bool]:
        """The query's vector (1, dim) and whether it came from ``caller``'s cache."""
        if self._size == 0:
            return embedder.embed_texts([query]), False
        key = (embedder.source, query)
        with self._lock:
            cache = self._caches.setdefault(caller, LRUCache(maxsize=self._size))
            vector = cache.get(key)
        if vector is not None:
            return vector, True
        vector = embedder.embed_texts([query])
        vector.flags.writeable = False  # shared by every request of this caller that asks it
        with self._lock:
            cache[key] = vector
        return vector, False
