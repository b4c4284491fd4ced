"""`make sam-local` (sam build, then sam local start-api) against the bucket the build functions
published, and the README's two curl calls through it: the text search and the upload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.container import rie
from tests.container.conftest import ContainerBuild
from tests.container.test_functions import RESULT_FIELDS
from tests.support.factories import free_port, sample_bucket_layout

START_SECONDS = 900  # sam build (cached layers after `make image`) and the API's start


@pytest.fixture(scope="module")
def sam_api(
    container_build: ContainerBuild,
    bridge_s3: str,
    docker_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    if shutil.which("curl") is None:  # the README's calls are curl's
        pytest.fail("curl is missing: apt-get install curl")
    port = free_port()
    log = tmp_path_factory.mktemp("sam-local") / "make.log"
    before = set(rie.docker("ps", "-aq", env=docker_env).split())
    with log.open("w") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "sam-local", f"PORT={port}",
             f"BUCKET={container_build.bucket}", f"S3_ENDPOINT={bridge_s3}"],
            cwd=rie.ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, make, log)
        yield url
    finally:
        # SIGINT, as Ctrl-C would: SAM stops the containers it started; whatever is left goes.
        _signal(make, signal.SIGINT)
        try:
            make.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _signal(make, signal.SIGKILL)
            make.wait()
        left = set(rie.docker("ps", "-aq", env=docker_env).split()) - before
        if left:
            rie.docker("rm", "--force", *left, env=docker_env, check=False)


def _signal(make: subprocess.Popen[bytes], number: int) -> None:
    """To make's whole process group (sam runs under it), if any of it is left."""
    try:
        os.killpg(make.pid, number)
    except ProcessLookupError:
        pass


def _wait_for(url: str, make: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if make.poll() is not None:
            pytest.fail(f"make sam-local ended ({make.returncode}):\n{log.read_text()[-4000:]}")
        try:
            httpx.get(url + "/health", timeout=60)
            return
        except httpx.TransportError:
            time.sleep(1)
    pytest.fail(
        f"sam local start-api did not answer in {START_SECONDS} s:\n{log.read_text()[-4000:]}"
    )


def curl(*args: str) -> tuple[int, object]:
    """curl as the README runs it, plus the status code on a line of its own."""
    done = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=120
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_the_readme_text_search_answers_through_sam_local(sam_api: str) -> None:
    status, results = curl(
        f"{sam_api}/image_search/search", "-H", "content-type: application/json",
        "-d", '{"query": "show me nature photos", "k": 3}',
    )  # fmt: skip
    assert status == 200, results
    assert isinstance(results, list) and len(results) == 3
    assert all(set(result) >= RESULT_FIELDS for result in results)


def test_the_readme_upload_answers_through_sam_local(sam_api: str, tmp_path: Path) -> None:
    """The upload SAM CLI's HTTP API emulation answers 502 to without the local template's
    binary media types (infra/local_template.py): the JPEG's bytes are not UTF-8."""
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(sample_bucket_layout()["vehicles/rocket.jpg"])
    status, results = curl(
        f"{sam_api}/image_search/search_by_image", "-F", f"file=@{photo}", "-F", "k=5"
    )
    assert status == 200, results
    assert isinstance(results, list) and len(results) == 5
    assert all(set(result) >= RESULT_FIELDS for result in results)
    assert results[0]["key"] == "vehicles/rocket.jpg"  # found itself: the bytes arrived intact
