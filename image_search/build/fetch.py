"""Downloading and decoding the images to embed, ahead of the model, in a thread pool; the photo
fields (model/photo_fields.py) are read from the same bytes, so an image is fetched once."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from image_search.artefacts.manifest import Skipped
from image_search.build.options import BuildOptions
from image_search.errors import (
    ImageSearchError,
    ImageTooLargeError,
    InvalidImageError,
    ObjectChangedError,
    StorageUnavailableError,
)
from image_search.model import images
from image_search.model.photo_fields import PhotoFields, read_fields
from image_search.storage import s3

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One object, decoded, with the fields its header gave."""

    obj: s3.S3Object
    image: Image.Image
    fields: PhotoFields


Batch = list[Fetched]


def decoded_batches(
    todo: list[s3.S3Object],
    *,
    client: s3.S3Client,
    bucket: str,
    options: BuildOptions,
    batch_size: int,
    photo_fields: bool = True,
) -> Iterator[tuple[Batch, list[Skipped]]]:
    """Batches of decoded images in ``todo`` order, with the objects that failed since the last.

    Downloads run ahead in a thread pool so the model never waits on S3, while the window bounds
    how many images sit in memory. ``photo_fields=False`` leaves the fields empty (what the
    benchmark compares against).
    """
    workers = options.download_workers
    window = batch_size * 2 + workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        pending: deque[tuple[s3.S3Object, Future[Fetched]]] = deque()
        remaining = iter(todo)
        batch: Batch = []
        failures: list[Skipped] = []
        while True:
            while len(pending) < window and (obj := next(remaining, None)) is not None:
                pixels = options.max_image_pixels
                pending.append(
                    (obj, pool.submit(fetch_photo, client, bucket, obj, pixels, photo_fields))
                )
            if not pending:
                break
            obj, future = pending.popleft()
            try:
                batch.append(future.result())
            except (ImageSearchError, OSError) as exc:
                failures.append(_skipped(obj, exc))
                LOG.warning("skipping %s: %s", obj.key, exc)
            if len(batch) >= batch_size:
                yield batch, failures
                batch, failures = [], []
        if batch or failures:
            yield batch, failures


def _skipped(obj: s3.S3Object, exc: Exception) -> Skipped:
    # Bytes that are not a usable image stay so until the object changes (a new ETag); a failed
    # download may succeed next time.
    lasting = isinstance(exc, InvalidImageError | ImageTooLargeError)
    return Skipped(
        key=obj.key, reason=str(exc), etag=obj.etag, cause="image" if lasting else "download"
    )


def fetch_photo(
    client: s3.S3Client, bucket: str, obj: s3.S3Object, max_pixels: int, photo_fields: bool
) -> Fetched:
    """The image as listed: the bytes of ``obj.etag``, since its vector is stored under that ETag,
    decoded, and the photo fields read from the same bytes once they decoded (so the pixel limit
    was checked on them first).

    An object replaced since the listing is skipped (cause "download"), not embedded: its new
    bytes under the old ETag would be reused by every later build as long as that ETag matched.
    """
    data = _download(client, bucket, obj)
    image = images.decode(data, max_pixels=max_pixels)
    return Fetched(obj, image, read_fields(data) if photo_fields else PhotoFields())


def _download(client: s3.S3Client, bucket: str, obj: s3.S3Object) -> bytes:
    try:
        data = s3.get_bytes(client, bucket=bucket, key=obj.key, etag=obj.etag)
    except ObjectChangedError as exc:
        raise ObjectChangedError("replaced during the build; the next build embeds it") from exc
    except Exception as exc:
        if s3.is_missing(exc):
            raise StorageUnavailableError("deleted during the build") from exc
        raise
    return data
