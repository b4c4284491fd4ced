"""``python -m image_search serve`` as a user runs it: a real uvicorn process on loopback."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time

import httpx

from image_search.cli import KEEP_ALIVE_SECONDS
from tests.support.factories import free_port
from tests.support.paths import ROOT


def test_serve_answers_searches_over_http(api_env, indexed_bucket) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "image_search", "serve", "--port", str(port)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        response = httpx.post(
            f"{base}/image_search/search", json={"query": "show me nature photos"}
        )
        assert response.status_code == 200
        assert len(response.json()) == 4 and response.headers["x-image-search-folders"] == "nature"
        assert_idle_connection_kept(port)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output


# Longer than the keep-alive of httpx's pool and of uvicorn's default (5 s each).
IDLE_SECONDS = 6.0


def assert_idle_connection_kept(port: int) -> None:
    """A connection left idle longer than a client's pool keeps one still answers: had the
    server closed it at the same moment, a request sent on it would fail (cli.py says why)."""
    assert KEEP_ALIVE_SECONDS > IDLE_SECONDS
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/health")
        assert connection.getresponse().read()
        time.sleep(IDLE_SECONDS)
        # The same socket (http.client reconnects only when it knows the old one is gone): on a
        # connection the server has closed, this raises RemoteDisconnected.
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
