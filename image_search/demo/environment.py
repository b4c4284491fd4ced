"""The demo's storage and data: its own S3 and bucket (unless the environment names them), the
sample photos uploaded, the index built and saved to ``.demo/`` so the next start reuses it."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from image_search.build.pipeline import run_build
from image_search.build.report import BuildReport
from image_search.files import atomic_path
from image_search.model.embedder import Embedder
from image_search.storage import s3

PHOTOS = Path(__file__).resolve().parents[2] / "sample_photos"
DEMO_BUCKET = "image-search-demo"


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    state_dir: Path = Path(".demo")
    photos: Path = PHOTOS


@dataclass(frozen=True, kw_only=True)
class Target:
    bucket: str
    embedded: bool  # an in-memory S3 whose index the demo saves and restores
    upload: bool  # fill the bucket with the sample photos


def prepare(
    target: Target, *, options: DemoOptions, client: s3.S3Client, embedder: Embedder
) -> BuildReport:
    """Fill the bucket (when the demo owns it), build incrementally, save the index."""
    from image_search.config import get_settings

    settings = get_settings()
    saved = options.state_dir / "s3" / target.bucket
    if target.upload:
        _ensure_bucket(client, target.bucket)
        count = upload_photos(client, bucket=target.bucket, photos=options.photos)
        print(f"uploaded {count} sample photos to s3://{target.bucket}/", flush=True)
    if target.embedded and saved.is_dir():
        _upload_tree(client, bucket=target.bucket, root=saved)
        print(f"restored the index saved in {saved}", flush=True)
    report = run_build(settings, client=client, embedder=embedder)
    if target.embedded and (report.published or not saved.is_dir()):
        _save_prefix(client, bucket=target.bucket, prefix=settings.index_prefix, into=saved)
    return report


def upload_photos(client: s3.S3Client, *, bucket: str, photos: Path) -> int:
    """Every image under ``photos`` (folder/name.jpg) to the same key; unchanged bytes keep their
    ETag, which is what lets the incremental build reuse their vectors."""
    files = sorted(p for p in photos.rglob("*") if p.is_file() and s3.is_image_key(p.name))
    for path in files:
        key = path.relative_to(photos).as_posix()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.put_bytes(client, bucket=bucket, key=key, data=path.read_bytes(), content_type=kind)
    return len(files)


@contextmanager
def demo_environment(options: DemoOptions) -> Iterator[Target]:
    """The settings the demo runs with, in os.environ for the run only: the demo's own S3 and
    bucket unless the environment names a bucket or an S3 endpoint."""
    values = {"IMAGE_SEARCH_MODEL": _model_setting(options.model)} if options.model else {}
    bucket = os.environ.get("IMAGE_SEARCH_BUCKET")
    if bucket or os.environ.get("AWS_ENDPOINT_URL_S3"):
        target = Target(bucket=bucket or DEMO_BUCKET, embedded=False, upload=not bucket)
        where = os.environ.get("AWS_ENDPOINT_URL_S3", "AWS")
        print(f"using s3://{target.bucket}/ on {where}", flush=True)
        with _environment({**values, "IMAGE_SEARCH_BUCKET": target.bucket}):
            yield target
        return
    from image_search.demo.local_s3 import embedded_s3

    with embedded_s3() as endpoint:
        print(f"embedded S3 at {endpoint} (in memory)", flush=True)
        values.update(
            AWS_ENDPOINT_URL_S3=endpoint,
            AWS_ENDPOINT_URL_SQS=endpoint,  # the same server answers SQS (demo/fresh.py)
            IMAGE_SEARCH_BUCKET=DEMO_BUCKET,
            IMAGE_SEARCH_INDEX_CACHE_DIR=str(options.state_dir.resolve() / "index-cache"),
        )
        with _environment(values):
            yield Target(bucket=DEMO_BUCKET, embedded=True, upload=True)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _model_setting(model: str) -> str:
    # The index records the model string; an absolute path keeps it the same from any directory.
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def _ensure_bucket(client: s3.S3Client, bucket: str) -> None:
    region = client.meta.region_name
    extra = (
        {}
        if region in (None, "us-east-1")
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    with s3.translate_errors(bucket):
        try:
            client.create_bucket(Bucket=bucket, **extra)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass


def _upload_tree(client: s3.S3Client, *, bucket: str, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = path.relative_to(root).as_posix()
        s3.put_bytes(
            client,
            bucket=bucket,
            key=key,
            data=path.read_bytes(),
            content_type="application/octet-stream",
        )


def _save_prefix(client: s3.S3Client, *, bucket: str, prefix: str, into: Path) -> None:
    """Copy every object under ``prefix`` to ``into``, replacing it whole (never half a copy)."""
    with atomic_path(into, directory=True) as staging:
        for obj in s3.list_objects(client, bucket=bucket, prefix=prefix):
            path = staging / obj["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_bytes(client, bucket=bucket, key=obj["Key"]))
