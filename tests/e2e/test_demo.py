"""The demo end to end, as ``make demo`` runs it (a real process, Ctrl-C included), and the page's
serving rules. The browser side is in test_browser.py."""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from image_search.demo.environment import PHOTOS, DemoOptions, Target, demo_environment, prepare
from image_search.storage import s3
from tests.support.paths import ROOT

STARTUP_SECONDS = 180  # importing torch and transformers dominates; 2 busy cores are slow


class Demo:
    """``python -m image_search demo`` in a child process, its output read line by line."""

    def __init__(self, *args: str, hub: dict[str, str] | None = None) -> None:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("IMAGE_SEARCH_", "HF_")) and name != "AWS_ENDPOINT_URL_S3"
        }
        # No model hub here or in CI: the demo must never try it, and fail at once if it would.
        env.update(hub if hub is not None else {"HF_HUB_OFFLINE": "1"}, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "image_search", "demo", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = STARTUP_SECONDS) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it; the exit code once the process is gone."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def demo(*args: str, hub: dict[str, str] | None = None) -> Iterator[Demo]:
    running = Demo(*args, hub=hub)
    try:
        yield running
    finally:
        running.kill()


def test_demo_serves_the_sample_photos_and_reuses_its_index(
    tiny_model: Path, exported: Path, tmp_path: Path
):
    """The second run serves the model's ONNX export: the index built with torch is reused,
    since an index belongs to the model, not to its runtime."""
    state = tmp_path / "state"
    with demo("--model", str(tiny_model), "--state-dir", str(state)) as first:
        built = first.wait_for(r"index: published build (\S+) with (\d+) images")
        url = first.wait_for(r"search page and API: (http://127\.0\.0\.1:\d+/)").group(1)
        assert int(built.group(2)) == len(list(PHOTOS.rglob("*.jpg")))
        with httpx.Client(base_url=url, timeout=30) as http:
            page = http.get("/")
            assert page.status_code == 200 and "<title>Image search</title>" in page.text
            folders = {f["folder"] for f in http.get("image_search/folders").json()}
            assert {"animals", "nature", "people", "vehicles", "food", "objects"} <= folders
            hits = http.post("image_search/search", json={"query": "a cat", "k": 4}).json()
            assert len(hits) == 4
            # The presigned URLs point at the embedded S3 and serve the photo itself.
            photo = httpx.get(hits[0]["image_url"], timeout=30)
            assert photo.status_code == 200
            assert photo.content == (PHOTOS / hits[0]["key"]).read_bytes()
        assert first.interrupt() == 0
        assert first.lines[-1] == "stopped"
        assert not any("Traceback" in line for line in first.lines), first.lines

    with demo("--model", str(exported), "--state-dir", str(state)) as second:
        reused = second.wait_for(r"index: (reused|published) build (\S+)")
        assert reused.groups() == ("reused", built.group(1)), second.lines
        url = second.wait_for(r"search page and API: (http://\S+)").group(1)
        assert httpx.get(url + "health", timeout=30).json()["build_id"] == built.group(1)
        hits = httpx.post(url + "image_search/search", json={"query": "a cat", "k": 4}, timeout=30)
        assert hits.status_code == 200 and len(hits.json()) == 4
        assert second.interrupt() == 0
    assert any("tower of the ONNX export" in line for line in second.lines), second.lines


@pytest.mark.slow  # a demo process, and the service's default 10 s poll
def test_a_photo_copied_into_the_demo_bucket_is_found_within_the_documented_time(
    tiny_model: Path, tmp_path: Path
):
    """Issue 25: the command the demo prints copies a photo in; ingest, running beside the server,
    publishes it as a segment and the page's API finds it (by itself first) within the time the
    demo states. The service has no write route: the photo goes to S3, not to the API."""
    from tests.support.factories import encode, random_image

    with demo("--model", str(tiny_model), "--state-dir", str(tmp_path / "state")) as running:
        url = running.wait_for(r"search page and API: (http://127\.0\.0\.1:\d+/)").group(1)
        line = running.wait_for(r"searchable within about (\d+) s; to copy one: (.+)$")
        within, command = int(line.group(1)), line.group(2)
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(encode(random_image(90), "JPEG"))
        args = shlex.split(command.replace("photo.jpg animals/photo.jpg", ""))
        started = time.monotonic()
        copied = subprocess.run(
            [*args, str(photo), "animals/copied in.jpg"], capture_output=True, text=True, timeout=60
        )
        assert copied.returncode == 0, copied.stderr
        with httpx.Client(base_url=url, timeout=30) as http:
            while True:
                found = http.post(
                    "image_search/search_by_image",
                    files={"file": ("p.jpg", photo.read_bytes())},
                    data={"k": 1},
                ).json()
                if found and found[0]["key"] == "animals/copied in.jpg":
                    break
                assert time.monotonic() - started < within, running.lines
                time.sleep(0.5)
        assert running.interrupt() == 0
        assert not any("Traceback" in line for line in running.lines), running.lines


def test_demo_without_the_model_says_in_one_line_how_to_pass_one(tmp_path: Path):
    # The default model comes from the hub, which HF_HUB_OFFLINE=1 makes unreachable.
    with demo("--state-dir", str(tmp_path)) as run:
        code = run.process.wait(timeout=STARTUP_SECONDS)
        run.wait_for(r"^error:", timeout=5)
    errors = [line for line in run.lines if line.startswith("error:")]
    assert code == 2
    assert len(errors) == 1, run.lines
    assert 'make demo ARGS="--model /path/to/model"' in errors[0]
    assert "python -m image_search demo --model" in errors[0]
    assert "IMAGE_SEARCH_MODEL" in errors[0]
    assert not any("Traceback" in line for line in run.lines), run.lines


def test_demo_with_the_hub_unreachable_fails_at_once_and_quietly(tmp_path: Path):
    """No HF_HUB_OFFLINE: the demo's own check finds the hub unreachable (a closed loopback port
    here) and must make the load offline, so no download is tried and retried."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    hub = {"HF_ENDPOINT": f"http://127.0.0.1:{closed}", "HF_HOME": str(tmp_path / "hf")}
    with demo("--state-dir", str(tmp_path / "state"), hub=hub) as run:
        code = run.process.wait(timeout=STARTUP_SECONDS)
        run.wait_for(r"^error:", timeout=5)
    errors = [line for line in run.lines if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, run.lines
    assert "the model hub is unreachable and the model is not cached" in errors[0]
    assert not any("Retrying" in line or str(closed) in line for line in run.lines), run.lines


def test_demo_on_a_named_bucket_uploads_nothing(
    bucket: str, client: s3.S3Client, embedder, tmp_path: Path
):  # type: ignore[no-untyped-def]
    """With IMAGE_SEARCH_BUCKET set the demo indexes that bucket as it is."""
    photo = next(PHOTOS.rglob("*.jpg"))
    client.put_object(Bucket=bucket, Key="mine/photo.jpg", Body=photo.read_bytes())
    options = DemoOptions(state_dir=tmp_path / "state")

    with demo_environment(options) as target:
        assert target == Target(bucket=bucket, embedded=False, upload=False)
        report = prepare(target, options=options, client=client, embedder=embedder)

    assert report.published and report.count == 1
    keys = [obj["Key"] for obj in s3.list_objects(client, bucket=bucket)]
    assert [key for key in keys if not key.startswith("index/")] == ["mine/photo.jpg"]
    assert not (tmp_path / "state").exists()  # only the embedded S3's index is saved locally


def test_the_page_is_served_without_the_api_key_under_the_prefix(api_env):  # type: ignore[no-untyped-def]
    from tests.support.service import make_api

    api_env.setenv("IMAGE_SEARCH_API_KEYS", "secret")
    api_env.setenv("IMAGE_SEARCH_API_PREFIX", "/v1")
    http = make_api()

    page = http.get("/v1/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in [("app.js", "text/javascript"), ("style.css", "text/css")]:
        asset = http.get(f"/v1/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    # Relative URLs only, so the page works under any prefix or stage, and nothing from a CDN.
    assert not re.search(r"""(src|href)="(/|https?:)""", page.text)
    assert http.get("/v1/static/..%2Fapi.py").status_code == 404
    assert http.get("/v1/static/page.py").status_code == 404
    assert http.post("/v1/image_search/search", json={"query": "cat"}).status_code == 401


def test_the_readme_examples_name_the_demo_s_own_photos() -> None:
    """The API examples in the README can be pasted against `make demo`: every key, s3:// path
    and uploaded file they name is one of the sample photos."""
    readme = (ROOT / "README.md").read_text()
    api = readme[readme.index("<!-- section: api -->") : readme.index("<!-- end: api -->")]
    keys = re.findall(r'"key": "([^"]+)"', api)
    keys += re.findall(r"s3://image-search-demo/([^\"'\s]+)", api)
    files = re.findall(r"=@(\S+)", api)
    assert keys and files
    for key in keys:
        assert (PHOTOS / key).is_file(), key
    for name in files:
        assert (ROOT / name).is_file() and PHOTOS in (ROOT / name).parents, name
    assert "s3://my-images" not in api.split("```sh")[1]  # the examples' own bucket is the demo's
    assert 'make demo ARGS="--port' in readme
