"""An S3 server (the product's embedded moto) in its own process, so it holds no GIL of ours."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

CHILD = (
    "import sys, time; from image_search.demo.local_s3 import embedded_s3\n"
    "import logging; logging.getLogger('werkzeug').setLevel(logging.WARNING)\n"
    "with embedded_s3() as url:\n"
    "    print(url, flush=True); sys.stdin.read()\n"
)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextmanager
def s3_server(*, files: str | None = None) -> Iterator[str]:
    """Start moto on loopback, point boto3 here at it (AWS_ENDPOINT_URL_S3), yield the URL.

    With ``files``, the file-backed server of bench.objectstore instead, storing under that folder.
    """
    saved = {name: os.environ.get(name) for name in [*CREDENTIALS, "AWS_ENDPOINT_URL_S3"]}
    os.environ.update(CREDENTIALS)
    command = ["-c", CHILD] if files is None else ["-m", "bench.objectstore", files]
    process = subprocess.Popen(
        [sys.executable, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": _root()},
        cwd=_root(),
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the S3 server did not start")
        os.environ["AWS_ENDPOINT_URL_S3"] = url
        yield url
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the child exits when its stdin ends
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])
