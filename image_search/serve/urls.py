"""The URLs results point at: presigned (SigV4, made locally) or public, reused for a while.

Always in the configured bucket: a build's catalog names the bucket it was built from, which is
another one in a copied or replicated bucket, and is data rather than a choice of what to sign.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachetools import TTLCache

from image_search.storage import s3

# botocore spends ~2 ms of CPU signing one URL, as much as the FAISS search itself; result pages
# repeat keys, so a URL is reused for a tenth of its lifetime: clients always get at least 90%
# of the configured expiry.
REUSE_FRACTION = 0.1
MAX_ENTRIES = 10_000


class ImageUrls:
    def __init__(
        self,
        client: Callable[[], s3.S3Client],
        *,
        bucket: str,
        mode: str,
        expires: int,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._public = mode == "public"
        self._expires = expires
        reuse = float("inf") if self._public else expires * REUSE_FRACTION
        self._cache: TTLCache[str, str] = TTLCache(maxsize=MAX_ENTRIES, ttl=reuse, timer=timer)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def __call__(self, key: str) -> str:
        with self._lock:
            url = self._cache.get(key)
        if url is None:
            url = self._make(key)
            with self._lock:
                self._cache[key] = url
        return url

    def _make(self, key: str) -> str:
        client, bucket = self._client(), self._bucket
        if self._public:
            return s3.public_url(client, bucket=bucket, key=key)
        return s3.presign_get(client, bucket=bucket, key=key, expires=self._expires)
