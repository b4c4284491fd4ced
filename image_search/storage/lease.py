"""One builder at a time: a lease object under the index prefix, taken with a conditional write.

``<prefix>work/build-lease.json`` is created with ``If-None-Match: *``, so of two builders
starting together exactly one gets it; the other stops with ``BuildRunningError``. The object
holds its expiry. A running build renews it in a background thread every third of its duration
(``If-Match`` on its ETag), so a long command-line build keeps it while a killed one lets it
lapse; the next builder then takes an expired lease over with ``If-Match`` on the ETag it read,
which again only one of several can win. The lease is released by its owner (read, compared, deleted
with ``If-Match`` on the ETag just read: never a lease another build took over) when
the build ends, also on failure.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel, Field, ValidationError, model_validator

from image_search.errors import BuildRunningError, ImageSearchError
from image_search.storage import s3

LOG = logging.getLogger(__name__)


class LeaseRecord(BaseModel):
    """The lease object's content: who holds it and until when.

    Versioned like the published documents (artefacts/versions.py): a builder that finds a lease
    in a newer format neither reads half of it nor takes it over as unreadable; it stops.
    """

    FORMAT: ClassVar[int] = 1
    schema_version: int = Field(default=FORMAT, ge=1)
    owner: str
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _readable(cls, data: Any) -> Any:
        version = data.get("schema_version", 1) if isinstance(data, dict) else 1
        if isinstance(version, int) and version > cls.FORMAT:
            raise BuildRunningError(
                f"the build lease has schema_version {version}; this code reads up to "
                f"{cls.FORMAT}: a newer image-search holds it: build with that version (or "
                "delete the lease object once no build runs)"
            )
        return data

    def describe(self) -> str:
        return (
            f"started {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC on {self.host} (pid {self.pid}); "
            f"its lease runs until {self.expires_at:%H:%M:%S} UTC"
        )


class Lease:
    """A held build lease; ``renew`` keeps it, ``release`` gives it back."""

    def __init__(
        self, client: s3.S3Client, *, bucket: str, key: str, record: LeaseRecord, etag: str
    ) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self.record = record
        self._etag = etag
        self._seconds = (record.expires_at - record.acquired_at).total_seconds()
        self._lock = threading.Lock()
        self._released = False
        self.lost = False

    def renew(self) -> bool:
        """Push the expiry out by one duration; False (and ``lost``) if someone took it over.

        A 412 does not prove that: when S3 stored a renewal but its answer was lost, botocore's
        retry of the same conditional PUT gets 412 against our own new ETag. So the lease is
        read again, and only another owner's record (or none) means it is gone.
        """
        with self._lock:
            if self.lost or self._released:
                return False
            record = self.record.model_copy(update={"expires_at": _now() + self._duration})
            where = {"bucket": self._bucket, "key": self._key}
            etag = _write(self._client, record=record, etag=self._etag, **where)
            if etag is None:
                ours = _read_owned(self._client, owner=self.record.owner, **where)
                if ours is not None:
                    self._etag = ours
                    etag = _write(self._client, record=record, etag=ours, **where)
            if etag is None:
                self.lost = True
                LOG.error("the build lease was taken over by another builder")
                return False
            self.record, self._etag = record, etag
            return True

    def ensure_held(self) -> None:
        """Renew now, and stop a build whose lease another builder took over (after it lapsed)
        before it writes anything shared: a checkpoint or the pointer."""
        if not self.renew():
            raise BuildRunningError(
                "this build's lease lapsed and another build took it over; nothing was published"
            )

    def release(self) -> None:
        """Give the lease back if this build still owns it (by owner, not by a saved ETag)."""
        with self._lock:
            if self.lost or self._released:
                return
            self._released = True
            owner = self.record.owner
            if not release_owned(self._client, bucket=self._bucket, key=self._key, owner=owner):
                LOG.warning("the build lease was no longer ours when released")

    @property
    def etag(self) -> str:
        """The lease object's ETag while held: what a process taking over the lease needs."""
        return self._etag

    @property
    def _duration(self) -> timedelta:
        return timedelta(seconds=self._seconds)


def acquire(
    client: s3.S3Client, *, bucket: str, key: str, seconds: float, owner: str | None = None
) -> Lease:
    """Take the build lease at ``key``, or raise ``BuildRunningError`` naming the build that
    holds it. ``owner`` names the holder (a Step Functions execution: its id, so that any of its
    states can give the lease back); by default a new random one."""
    now = _now()
    record = LeaseRecord(
        owner=owner or uuid.uuid4().hex,
        host=socket.gethostname(),
        pid=os.getpid(),
        acquired_at=now,
        expires_at=now + timedelta(seconds=seconds),
    )
    for _ in range(2):  # a second try when the lease was released between our two requests
        etag = _write(client, bucket=bucket, key=key, record=record, etag=None)
        if etag is not None:
            return Lease(client, bucket=bucket, key=key, record=record, etag=etag)
        found = _read(client, bucket=bucket, key=key)
        if found is None:
            continue
        holder, found_etag = found
        if holder is not None and holder.owner == record.owner:
            # botocore retried our create after S3 had already stored it.
            return Lease(client, bucket=bucket, key=key, record=record, etag=found_etag)
        if holder is not None and holder.expires_at > _now():
            raise BuildRunningError(f"another build is running: {holder.describe()}")
        what = holder.describe() if holder is not None else "unreadable"
        LOG.warning("taking over an expired build lease (%s)", what)
        etag = _write(client, bucket=bucket, key=key, record=record, etag=found_etag)
        if etag is not None:
            return Lease(client, bucket=bucket, key=key, record=record, etag=etag)
        raise BuildRunningError("another build took over the expired build lease first")
    raise BuildRunningError("the build lease keeps changing hands; try again")


@contextmanager
def held(client: s3.S3Client, *, bucket: str, key: str, seconds: float) -> Iterator[Lease]:
    """The lease for the duration of the block, renewed in the background, released at the end."""
    lease = acquire(client, bucket=bucket, key=key, seconds=seconds)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_keep_renewed, args=(lease, stop, seconds / 3), name="lease", daemon=True
    )
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        renewer.join()
        try:
            lease.release()
        except ImageSearchError as exc:  # it expires on its own; don't hide the build's outcome
            LOG.warning("could not release the build lease: %s", exc)


def release_owned(client: s3.S3Client, *, bucket: str, key: str, owner: str) -> bool:
    """Delete the lease if ``owner`` holds it (If-Match on the ETag just read, so a lease taken
    over meanwhile is never deleted); True when it was ours, or is gone already."""
    for _ in range(3):  # our own renewal may move the ETag between the read and the delete
        found = _read(client, bucket=bucket, key=key)
        if found is None:
            return True
        holder, etag = found
        if holder is None or holder.owner != owner:
            return False
        if s3.delete_if(client, bucket=bucket, key=key, etag=etag):
            return True
    return False


def _read_owned(client: s3.S3Client, *, bucket: str, key: str, owner: str) -> str | None:
    """The lease's ETag when ``owner`` holds it, else None."""
    found = _read(client, bucket=bucket, key=key)
    if found is None:
        return None
    holder, etag = found
    return etag if holder is not None and holder.owner == owner else None


def _keep_renewed(lease: Lease, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            if not lease.renew():
                return
        except ImageSearchError as exc:  # S3 hiccup: the lease has two more periods to go
            LOG.warning("could not renew the build lease: %s", exc)


def _write(
    client: s3.S3Client, *, bucket: str, key: str, record: LeaseRecord, etag: str | None
) -> str | None:
    return s3.put_if(
        client,
        bucket=bucket,
        key=key,
        data=record.model_dump_json().encode(),
        content_type="application/json",
        etag=etag,
    )


def _read(client: s3.S3Client, *, bucket: str, key: str) -> tuple[LeaseRecord | None, str] | None:
    """The lease object's record (None when unreadable) and ETag; None when there is none."""
    found = s3.get_tagged(client, bucket=bucket, key=key)
    if found is None:
        return None
    data, etag = found
    try:
        return LeaseRecord.model_validate_json(data), etag
    except ValidationError:
        return None, etag


def _now() -> datetime:
    return datetime.now(UTC)
