"""Text query vectors kept per model, so a repeated query costs no forward pass.

A 512-d vector is 2 KiB: the default 1,024 entries hold 2 MiB. Keyed by the model's source as
well as the text, so two models in one process never share vectors.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache

from image_search.model.embedder import Embedder
from image_search.model.vectors import Vectors


class TextVectors:
    def __init__(self, *, size: int) -> None:
        self._cache: LRUCache[tuple[str, str], Vectors] | None = (
            LRUCache(maxsize=size) if size > 0 else None
        )
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def __call__(self, embedder: Embedder, query: str) -> tuple[Vectors, bool]:
        """The query's vector (1, dim) and whether it came from the cache."""
        if self._cache is None:
            return embedder.embed_texts([query]), False
        key = (embedder.source, query)
        with self._lock:
            vector = self._cache.get(key)
        if vector is not None:
            return vector, True
        vector = embedder.embed_texts([query])
        vector.flags.writeable = False  # shared by every request that asks the same
        with self._lock:
            self._cache[key] = vector
        return vector, False
