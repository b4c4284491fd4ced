"""A published synthetic index and the product's HTTP server (uvicorn handler:app) over it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from bench import data
from image_search.index import faiss_index
from image_search.model.vectors import Vectors
from image_search.storage import artefacts, layout, s3
from image_search.storage.manifest import Item, Metadata, folder_ranges

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("city", "nature", "people", "vehicles")
INDEX_PREFIX = "index/"


@dataclass(frozen=True)
class Published:
    bucket: str
    count: int
    index: faiss_index.Index
    index_type: str


def publish_synthetic(
    client: s3.S3Client, *, count: int, model: str, index_type: str = "auto", name: str = "search"
) -> Published:
    """``count`` clustered vectors published as a build of ``count`` JPEG keys in 4 folders, in
    a new bucket named after ``name``, ``count`` and ``index_type``."""
    bucket = f"bench-{name}-{count}-{index_type}"
    client.create_bucket(Bucket=bucket)
    vectors = data.clustered(count)
    items = [
        Item(key=f"{folder}/img-{row:07d}.jpg", folder=folder, etag=f"{row:032x}", size=60_000)
        for folder_no, folder in enumerate(FOLDERS)
        for row in range(folder_no, count, len(FOLDERS))
    ]
    built = faiss_index.build(vectors, index_type=faiss_index.choose_type(index_type, count))
    publish_build(client, bucket=bucket, model=model, index=built, vectors=vectors, items=items)
    return Published(bucket, count, built, faiss_index.kind_of(built))


def publish_build(
    client: s3.S3Client,
    *,
    bucket: str,
    model: str,
    index: faiss_index.Index,
    vectors: Vectors,
    items: list[Item],
    sorted_by: Literal["key", "folder"] = "folder",
) -> None:
    """``index`` over ``vectors`` published as a fresh bucket's first build of ``items``."""
    metadata = Metadata(
        build_id=layout.new_build_id(),
        model=model,
        dim=vectors.shape[1],
        index_type=faiss_index.kind_of(index),
        count=len(items),
        bucket=bucket,
        folders=folder_ranges(items),
        items=[],
        sorted_by=sorted_by,
    )
    # Assigned, not validated: the items are ours, and validating 10M of them costs minutes.
    metadata.items = items
    artefacts.publish(
        client,
        bucket=bucket,
        index_prefix=INDEX_PREFIX,
        metadata=metadata,
        index=index,
        vectors=vectors,
        keep_builds=1,
        pointer_etag=None,  # a fresh bucket
    )


def service_env(*, bucket: str, model: str, cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMAGE_SEARCH_BUCKET": bucket,
        "IMAGE_SEARCH_MODEL": model,
        "IMAGE_SEARCH_INDEX_CACHE_DIR": str(cache / "index"),
        "IMAGE_SEARCH_MODEL_CACHE_DIR": str(cache / "models"),
        # No hot-reload check against S3 in the middle of a timed series.
        "IMAGE_SEARCH_REFRESH_SECONDS": "0",
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def uvicorn_server(env: dict[str, str], *, timeout: float = 120) -> Iterator[tuple[str, int]]:
    """``uvicorn handler:app`` in its own process; yields (base URL, pid) once /health says 200."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "handler:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {url} did not become healthy")
            time.sleep(0.05)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
