"""``python -m image_search demo``: the whole product on one machine, on sample photos.

With no ``IMAGE_SEARCH_BUCKET`` and no ``AWS_ENDPOINT_URL_S3``, an embedded S3 (moto, in memory)
gets a bucket of the bundled photos in ``sample_photos/``; the real build indexes them and uvicorn
serves the API and the search page. The embedded S3 forgets everything when it stops, so the
published index is copied to ``.demo/`` after each build and put back at the next start: the
incremental build then finds every photo unchanged and embeds nothing.
"""

from __future__ import annotations

import argparse
import logging
import mimetypes
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import ValidationError

from image_search.build.pipeline import BuildOptions, BuildReport, ImageEmbedder, run_build
from image_search.errors import ImageSearchError, ModelLoadError
from image_search.messages import fail, settings_problem
from image_search.storage import s3

if TYPE_CHECKING:
    from image_search.model.embedder import ClipEmbedder

LOG = logging.getLogger(__name__)

PHOTOS = Path(__file__).resolve().parents[2] / "sample_photos"
DEMO_BUCKET = "image-search-demo"
HOW_TO_PASS_A_MODEL = (
    'run the demo with a local CLIP model: make demo ARGS="--model /path/to/model" '
    "(or python -m image_search demo --model /path/to/model, or IMAGE_SEARCH_MODEL=/path/to/model)"
)


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


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="CLIP model id or local directory (IMAGE_SEARCH_MODEL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, default=Path(".demo"), help="saved index")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folders of photos to upload")


def run_demo(options: DemoOptions) -> int:
    """Storage, photos, build, serve until Ctrl-C; one line and a non-zero exit on failure."""
    # moto logs every request, faiss which CPU build it picked: noise next to the demo's lines.
    for noisy in ("werkzeug", "faiss.loader", "huggingface_hub", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        listener = _listen(options.host, options.port)
    except OSError as exc:
        return fail(f"cannot listen on {options.host}:{options.port} ({exc.strerror}); try --port")
    try:
        with listener, demo_environment(options) as target:
            return _build_and_serve(options, target, listener)
    except KeyboardInterrupt:  # before serving: while loading the model or building
        print("\ninterrupted", flush=True)
        return 130


def _build_and_serve(options: DemoOptions, target: Target, listener: socket.socket) -> int:
    import uvicorn

    from image_search.config import get_settings
    from image_search.serve.api import create_app
    from image_search.serve.service import get_service

    get_settings.cache_clear()
    get_service.cache_clear()
    try:
        service = get_service()
    except ValidationError as exc:
        return fail(settings_problem(exc, flags=False))
    if problem := _load_model(service.embedder, service.settings.model):
        return fail(problem)
    try:
        report = prepare(target, options=options, client=service.client, embedder=service.embedder)
        service.current()  # load the index now: the page's first requests should not wait for it
    except ImageSearchError as exc:
        return fail(str(exc))
    print(_describe(report), flush=True)
    host, port = listener.getsockname()[:2]
    print(f"search page and API: http://{host}:{port}{service.settings.api_prefix}/", flush=True)
    print("press Ctrl-C to stop", flush=True)
    config = uvicorn.Config(create_app(), log_level="warning", lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        pass  # uvicorn stops gracefully on Ctrl-C, then raises it again
    print("stopped", flush=True)
    return 0


def _load_model(embedder: ClipEmbedder, model: str) -> str | None:
    """Load the model now, before any S3 work; what went wrong, in one line, if it fails."""
    print(f"loading model {model} …", flush=True)
    looks_like_a_path = model.startswith((".", "~")) or Path(model).is_absolute()
    if looks_like_a_path and not Path(model).expanduser().is_dir():
        return f"cannot load model {model!r}: {_reason('no such directory')}"
    hub_unreachable = _offline_unless_hub_reachable(model)
    try:
        embedder.load()
    except ModelLoadError as exc:
        unreachable = "the model hub is unreachable and the model is not cached"
        return f"cannot load model {model!r}: {_reason(unreachable if hub_unreachable else exc)}"
    return None


def prepare(
    target: Target, *, options: DemoOptions, client: s3.S3Client, embedder: ImageEmbedder
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
    report = run_build(BuildOptions.from_settings(settings), client=client, embedder=embedder)
    if target.embedded and (report.published or not saved.is_dir()):
        _save_prefix(client, bucket=target.bucket, prefix=settings.index_prefix, into=saved)
    return report


def _describe(report: BuildReport) -> str:
    if report.published:
        return (
            f"index: published build {report.build_id} with {report.count} images "
            f"({report.embedded} embedded, {report.reused} reused, {len(report.skipped)} skipped)"
        )
    return f"index: reused build {report.build_id} with {report.count} images, nothing to embed"


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
    into.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=into.parent, prefix=".saving-"))
    try:
        for obj in s3.list_objects(client, bucket=bucket, prefix=prefix):
            path = staging / obj["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_bytes(client, bucket=bucket, key=obj["Key"]))
        if into.exists():
            shutil.rmtree(into)
        staging.rename(into)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _listen(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        # Listening now queues the first connections until uvicorn takes the socket over, so the
        # URL printed before that already works.
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


def _offline_unless_hub_reachable(model: str) -> bool:
    """For a hub id, look for the hub first (3 s at most): unreachable, loading goes offline and
    fails at once instead of retrying for half a minute. True when it went offline."""
    if Path(model).exists() or model.startswith("s3://") or "HF_HUB_OFFLINE" in os.environ:
        return False
    host = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = "1"  # read when transformers is first imported, just after
        return True
    return False


def _reason(problem: ModelLoadError | str) -> str:
    cause = problem.__cause__ if isinstance(problem, ModelLoadError) else None
    text = str(cause or problem).strip().splitlines()[0]
    return f"{text.rstrip('.')[:200]}. To fix it, {HOW_TO_PASS_A_MODEL}"
