"""A real S3 client that records the objects it reads, at the edge (no patched boto3)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from image_search.storage import s3


class RecordingClient:
    """Every ``get_object`` recorded as (key, range or None), then passed to the real client,
    unless ``fail`` says to raise for it instead."""

    def __init__(
        self, client: s3.S3Client, *, fail: Callable[[str, str | None], bool] | None = None
    ) -> None:
        self._client = client
        self._fail = fail
        self._lock = threading.Lock()
        self.gets: list[tuple[str, str | None]] = []

    def get_object(self, **kwargs: object) -> object:
        key, ranged = str(kwargs["Key"]), kwargs.get("Range")
        with self._lock:
            self.gets.append((key, None if ranged is None else str(ranged)))
        if self._fail is not None and self._fail(key, None if ranged is None else str(ranged)):
            raise ConnectionResetError(f"connection reset reading {key}")
        return self._client.get_object(**kwargs)

    def reads_of(self, prefix: str) -> list[tuple[str, str | None]]:
        """The reads of keys under ``prefix``, in the order made."""
        return [(key, ranged) for key, ranged in self.gets if key.startswith(prefix)]

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)
