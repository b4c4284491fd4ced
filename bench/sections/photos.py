"""(10) What reading the photo fields costs the build (issue 24 §3): the shard stage's download
and decode threads with and without them, the CPU of one read beside one decode, and the ranged
GETs that give images reused from a build without fields theirs, against full downloads.

Camera JPEGs (the benchmark's photos with EXIF: make, model, date, time zone) in a moto S3
server reached over HTTP. The model is left out: its rate (section "build") is the same either
way, and would only hide the difference behind its own time.
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from PIL import Image

from bench.fixtures import photos as jpegs
from bench.report.stats import Rounds, Row
from image_search.build import photos as build_photos
from image_search.build.fetch import decoded_batches
from image_search.build.options import BuildOptions
from image_search.config import Settings
from image_search.model import images
from image_search.model.photo_fields import HEAD_BYTES, read_fields
from image_search.storage import s3

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

BUCKET = "bench-photos"
WORKERS = 8  # the build section's download threads
BATCH = 32


def run(shared: Shared) -> None:
    count, rounds = shared.sizes.build_images, max(2, shared.sizes.build_rounds)
    LOG.info("(10) photo fields: %d camera JPEGs, %d rounds", count, rounds)
    shared.s3()
    client = s3.make_client(max_connections=16)
    client.create_bucket(Bucket=BUCKET)
    payloads = [camera_jpeg(seed) for seed in range(count)]
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda at: _put(client, at, payloads[at]), range(count)))
    objects = s3.list_images(client, bucket=BUCKET, folders=[], exclude_prefix="index/")
    assert len(objects) == count and read_fields(payloads[0]).camera == "Canon EOS 5D"
    options = replace(BuildOptions.of(Settings(bucket=BUCKET)), download_workers=WORKERS)
    group = f"photo fields, {count} camera JPEGs"
    _fetch(shared, group, client=client, objects=objects, options=options, rounds=rounds)
    _cpu(shared, group, payloads=payloads, rounds=rounds)
    _heads(shared, group, client=client, objects=objects, payloads=payloads, rounds=rounds)


def camera_jpeg(seed: int) -> bytes:
    """The benchmark's JPEG ``seed`` with a camera's EXIF block."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS 5D"
    details = exif.get_ifd(0x8769)
    details[0x9003] = f"2024:06:{1 + seed % 28:02d} 14:03:22"
    details[0x9011] = "+02:00"
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(jpegs.jpeg(seed))) as picture:
        picture.save(buffer, "JPEG", quality=jpegs.QUALITY, exif=exif.tobytes())
    return buffer.getvalue()


def _put(client: s3.S3Client, at: int, data: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=f"camera/photo-{at:05d}.jpg", Body=data)


def _fetch(
    shared: Shared,
    group: str,
    *,
    client: s3.S3Client,
    objects: list[s3.S3Object],
    options: BuildOptions,
    rounds: int,
) -> None:
    """The shard stage's fetch threads over every object, with and without the fields; the two
    alternate each round so a change of load hits both."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for fields in (False, True):
            started = time.perf_counter()
            done = 0
            for batch, failures in decoded_batches(
                objects,
                client=client,
                bucket=BUCKET,
                options=options,
                batch_size=BATCH,
                photo_fields=fields,
            ):
                assert not failures, failures
                assert all((one.fields.camera is not None) == fields for one in batch)
                done += len(batch)
            rates[fields].append(done / (time.perf_counter() - started))
    without, with_fields = Rounds(rates[False]), Rounds(rates[True])
    shared.report.add(Row.of(group, "download + decode, without fields", without, "img/s"))
    shared.report.add(
        Row.of(
            group,
            "download + decode + fields",
            with_fields,
            "img/s",
            floor=without.median,
            ratio=with_fields.median / without.median,
            note=f"the shard stage's fetch, {WORKERS} threads, no model",
        )
    )


def _cpu(shared: Shared, group: str, *, payloads: list[bytes], rounds: int) -> None:
    """One thread: reading the fields of an image against decoding it, per image."""
    read = Rounds([_per_image(read_fields, payloads) for _ in range(rounds)])
    decode = Rounds(
        [_per_image(lambda d: images.decode(d, max_pixels=10**8), payloads) for _ in range(rounds)]
    )
    shared.report.add(Row.of(group, "decode, per image", decode, "µs"))
    shared.report.add(
        Row.of(
            group,
            "read_fields, per image",
            read,
            "µs",
            floor=decode.median,
            ratio=read.median / decode.median,
            note="one thread; what the fields add to each image's decode",
        )
    )


def _per_image(work: Callable[[bytes], object], payloads: list[bytes]) -> float:
    started = time.perf_counter()
    for data in payloads:
        work(data)
    return (time.perf_counter() - started) / len(payloads) * 1e6


def _heads(
    shared: Shared,
    group: str,
    *,
    client: s3.S3Client,
    objects: list[s3.S3Object],
    payloads: list[bytes],
    rounds: int,
) -> None:
    """The merge's ranged GETs for images reused from a build without fields, against a full
    download and read of each."""
    heads: list[float] = []
    full: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        found = build_photos.heads(
            client, bucket=BUCKET, objects=objects, at=range(len(objects)), workers=WORKERS
        )
        heads.append(len(objects) / (time.perf_counter() - started))
        assert all(photo is not None and photo.camera for photo in found)
        started = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda obj: _whole(client, obj), objects))
        full.append(len(objects) / (time.perf_counter() - started))
    average = statistics.fmean(len(data) for data in payloads) / 1024
    ranged, whole = Rounds(heads), Rounds(full)
    shared.report.add(Row.of(group, "full GET + read_fields", whole, "img/s"))
    shared.report.add(
        Row.of(
            group,
            f"ranged GET of {HEAD_BYTES // 1024} KiB + read_fields",
            ranged,
            "img/s",
            floor=whole.median,
            ratio=ranged.median / whole.median,
            note=f"{WORKERS} threads; images of {average:.0f} KiB on average (camera files: MBs)",
        )
    )


def _whole(client: s3.S3Client, obj: s3.S3Object) -> None:
    read_fields(s3.get_bytes(client, bucket=BUCKET, key=obj.key, etag=obj.etag))
