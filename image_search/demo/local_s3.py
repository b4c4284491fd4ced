"""An embedded S3 (moto's server on loopback) for the demo and the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def embedded_s3(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run an S3 server on ``host`` (a free port by default) and yield its endpoint URL.

    Sets dummy credentials only where none are set, so boto3 signs requests as it would for AWS.
    """
    from moto.server import ThreadedMotoServer  # a dev dependency: only the demo and tests use it

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        bound_host, bound_port = server.get_host_and_port()
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.stop()
