"""``python -m image_search serve`` as a user runs it: a real uvicorn process on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

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
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
