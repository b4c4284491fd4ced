"""Failures of S3 and of the build process: the service stays honest, no published index is lost.

S3 faults are real HTTP answers: a small proxy on loopback stands between boto3 and moto and
answers chosen requests with 503 SlowDown or 500 InternalError, delays them, or is not there at
all. botocore's own retries run as they would against AWS.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from image_search.artefacts.loader import LoadedBuild, load_build, load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.artefacts.manifest import Pointer
from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.errors import NewerFormatError
from image_search.serve import lifecycle
from image_search.serve.service import SearchService
from image_search.storage import s3
from image_search.storage.lease import LeaseRecord
from tests.support.buckets import put
from tests.support.factories import LambdaContext, encode, free_port, random_image
from tests.support.handlers import entry_point
from tests.support.paths import ROOT
from tests.support.service import make_api, point_at_index, wait_for_build
from tests.support.vectors import stored

S3_ERRORS = {503: "SlowDown", 500: "InternalError"}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length"}


# ---- a faulty S3 in front of moto --------------------------------------------------------------


class Hold:
    """GETs of one key wait at the proxy until released: a request to S3 that hangs."""

    def __init__(self) -> None:
        self.arrived = threading.Event()  # a GET of the key is waiting
        self.released = threading.Event()

    def wait(self) -> None:
        self.arrived.set()
        self.released.wait(timeout=60)  # a forgotten hold must not hang the test run

    def release(self) -> None:
        self.released.set()


class S3Proxy:
    """Forwards to moto; GETs of chosen keys first get the given error statuses, a delay, or
    wait until released."""

    def __init__(self, upstream: str, *, port: int = 0) -> None:
        self.upstream = urlsplit(upstream)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.faults: dict[str, list[int]] = {}  # key → statuses still to return
        self.get_delay = 0.0  # seconds before answering an image GET
        self.gets: Counter[str] = Counter()
        self.holds: dict[str, Hold] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def fail(self, key: str, *statuses: int) -> None:
        self.faults[key] = list(statuses)

    def hold(self, key: str) -> Hold:
        self.holds[key] = Hold()
        return self.holds[key]

    def start(self) -> S3Proxy:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _ProxyHandler)
        server.daemon_threads = True
        server.proxy = self  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fault_for(self, method: str, path: str) -> int | None:
        key = unquote(path).split("/", 2)[-1]  # path-style: /bucket/key
        if method != "GET":
            return None
        with self._lock:
            self.gets[key] += 1
            pending = self.faults.get(key)
            return pending.pop(0) if pending else None


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _forward(self) -> None:
        proxy: S3Proxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:  # the client died mid-upload: S3 would store nothing either
            self.close_connection = True
            return
        path = urlsplit(self.path).path
        status = proxy.fault_for(self.command, path)
        if status is not None:
            code = S3_ERRORS[status]
            self._reply(
                status, [], f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
            )
            return
        if self.command == "GET" and s3.is_image_key(path):
            time.sleep(proxy.get_delay)
        hold = proxy.holds.get(unquote(path).split("/", 2)[-1])
        if self.command == "GET" and hold is not None:
            hold.wait()
        upstream = http.client.HTTPConnection(
            proxy.upstream.hostname, proxy.upstream.port, timeout=30
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP]
        if self.command == "HEAD":
            kept.append(("Content-Length", answer.getheader("Content-Length", "0")))
        upstream.close()
        self._reply(answer.status, kept, data)

    def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


@pytest.fixture
def proxy(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Proxy]:
    """A proxy, not yet started, that every client made from here on goes through."""
    faulty = S3Proxy(s3_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.url)
    yield faulty
    faulty.stop()


def images(count: int, folder: str = "animals") -> dict[str, bytes]:
    return {f"{folder}/a{i:02d}.png": encode(random_image(i)) for i in range(count)}


def populate(client: s3.S3Client, bucket: str, layout: dict[str, bytes]) -> None:
    for key, data in layout.items():
        put(client, bucket, key, data)


def build(client: s3.S3Client, embedder, *, full: bool = False, **settings: object):  # type: ignore[no-untyped-def]
    """A build with the current settings, some of them replaced (e.g. download_workers=2)."""
    chosen = get_settings().model_copy(update=settings)
    return run_build(chosen, client=client, embedder=embedder, full=full)


# ---- S3 unavailable, throttling, server errors ---------------------------------------------------


def test_s3_unreachable_at_start_is_503_until_it_comes_back(
    client, bucket, embedder, proxy: S3Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(client, bucket, images(3))
    build(client, embedder)  # `client` goes straight to moto
    api = make_api()  # its service's client goes to the proxy, which is not listening yet

    for method, path, body in [
        ("GET", "/health", None),
        ("POST", "/image_search/search", {"query": "cat"}),
    ]:
        response = api.request(method, path, json=body)
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert "could not be loaded: S3 unreachable" in response.json()["detail"]

    proxy.start()
    monkeypatch.setattr(lifecycle, "RETRY_SECONDS", 0.0)  # don't wait the 5 s in a test
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["count"] == 3
    assert api.post("/image_search/search", json={"query": "cat"}).status_code == 200


def without_credentials(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nowhere for boto3 to find credentials: no variables, no files, no roles."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        env.delenv(name, raising=False)
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    env.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ("bucket", "bucket 'no-such-bucket-here' does not exist"),
        ("credentials", "no AWS credentials found"),
    ],
)
def test_a_configuration_error_is_500_and_not_retried(
    bucket, tiny_model, tmp_path, monkeypatch, fault: str, detail: str
) -> None:
    """A passing fault is 503 with Retry-After; a setting that is wrong stays wrong."""
    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path)
    if fault == "bucket":
        monkeypatch.setenv("IMAGE_SEARCH_BUCKET", "no-such-bucket-here")
    else:
        without_credentials(monkeypatch, tmp_path)
    api = make_api()
    for method, path, body in [
        ("GET", "/health", None),
        ("POST", "/image_search/search", {"query": "cat"}),
    ]:
        response = api.request(method, path, json=body)
        assert response.status_code == 500 and "Retry-After" not in response.headers
        assert detail in response.json()["detail"]


def test_the_build_says_credentials_are_missing_and_where_boto3_looks(
    bucket, tmp_path, monkeypatch, capsys
) -> None:
    from image_search.cli import main

    without_credentials(monkeypatch, tmp_path)
    assert main(["build"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: no AWS credentials found: boto3 reads AWS_ACCESS_KEY_ID")
    assert "~/.aws/credentials" in line and "unreachable" not in line


def test_throttled_and_failing_gets_are_retried_then_skipped(
    client, bucket, embedder, proxy: S3Proxy, caplog
) -> None:
    populate(client, bucket, images(6))
    proxy.fail("animals/a01.png", 503, 503)  # throttled twice, then served
    proxy.fail("animals/a02.png", 500)  # one server error, then served
    proxy.fail("animals/a03.png", *[503] * 20)  # never served
    proxy.start()

    report = build(s3.make_client(), embedder, download_workers=2)

    assert report.published and report.complete and report.count == 5
    assert [(s.key, s.reason) for s in report.skipped] == [
        ("animals/a03.png", f"S3 error SlowDown on bucket {bucket!r}")
    ]
    # Each retry is a real request; Config(retries={"max_attempts": 5}) counts retries, so 1 + 5.
    assert (proxy.gets["animals/a01.png"], proxy.gets["animals/a02.png"]) == (3, 2)
    assert proxy.gets["animals/a03.png"] == 6
    assert proxy.gets["animals/a00.png"] == 1
    meta = load_vectors(
        IndexLocation(client, bucket, "index/"), pointer=current_pointer(client, bucket)
    )[0]
    assert [s.key for s in meta.skipped] == ["animals/a03.png"]
    # The next build picks the skipped image up once S3 serves it.
    proxy.faults.clear()
    again = build(s3.make_client(), embedder)
    assert (again.published, again.count, again.embedded, again.skipped) == (True, 6, 1, [])


# ---- bad artefacts behind current.json -----------------------------------------------------


def current_pointer(client: s3.S3Client, bucket: str) -> Pointer:
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    return pointer


def read(client: s3.S3Client, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def publish_bad_build(client: s3.S3Client, bucket: str, name: str, damage: str) -> None:
    """Copy the current build as ``name`` with one kind of damage, and point current.json at it."""
    good = current_pointer(client, bucket)
    index = read(client, bucket, good.index_key)
    meta = json.loads(read(client, bucket, good.metadata_key))
    folder = f"index/builds/{name}/"
    pointer = Pointer(
        build_id=name,
        index_key=folder + "image_faiss_index.bin",
        metadata_key=folder + "image_metadata.json",
    )
    meta["build_id"] = name
    if damage == "corrupt-index":
        index = b"\x00" * 64 + index[64:]
    elif damage == "count":
        meta["count"] += 1
    elif damage == "dim":
        meta["dim"] *= 2
    elif damage == "model":
        meta["model"] = "openai/clip-vit-large-patch14"
    elif damage == "schema-version":
        meta["schema_version"] = 99
    if damage != "missing-files":
        put(client, bucket, pointer.index_key, index)
        put(client, bucket, pointer.metadata_key, json.dumps(meta).encode())
    if damage == "truncated-metadata":
        put(client, bucket, pointer.metadata_key, json.dumps(meta).encode()[:100])
    body = b'{"build_id": ' if damage == "garbage-pointer" else pointer.model_dump_json().encode()
    if damage == "newer-pointer":  # written by a newer version, in a format this one misreads
        body = json.dumps({"schema_version": 2, "build": {"id": name}}).encode()
    put(client, bucket, "index/current.json", body)


DAMAGE = {
    "missing-files": "NoSuchKey",
    "corrupt-index": "could not be loaded",
    "count": "metadata count 4, items 3, index vectors 3 disagree",
    "dim": "metadata dim",
    "model": "was made with model 'openai/clip-vit-large-patch14'",
    "schema-version": "has schema_version 99",
    "truncated-metadata": "Invalid JSON",
    "garbage-pointer": "Invalid JSON",
    "newer-pointer": "current.json has schema_version 2; this code reads up to 1: upgrade",
}


@pytest.mark.parametrize("document", ["current.json", "image_metadata.json"])
def test_a_build_in_a_newer_format_stops_an_older_builder(
    client, bucket, embedder, document: str
) -> None:
    """Not taken for damage and rebuilt from scratch: that would publish over it in the older
    format."""
    populate(client, bucket, images(2))
    first = build(client, embedder)
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    key = "index/current.json" if document == "current.json" else pointer.metadata_key
    newer = json.loads(read(client, bucket, key)) | {"schema_version": 2}
    put(client, bucket, key, json.dumps(newer).encode())
    put(client, bucket, "animals/new.png", encode(random_image(99)))
    with pytest.raises(NewerFormatError, match=f"{document} of build {first.build_id} has sch"):
        build(client, embedder)
    assert json.loads(read(client, bucket, "index/current.json")) == (
        newer if document == "current.json" else json.loads(pointer.document())
    )


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_bad_build_is_refused_and_the_previous_one_keeps_serving(
    client, bucket, embedder, caplog, damage: str
) -> None:
    populate(client, bucket, images(3))
    first = build(client, embedder)
    get_settings.cache_clear()
    service = SearchService(get_settings())
    assert service.current().metadata.build_id == first.build_id
    before = [hit.key for hit in service.search_text("a cat", k=3).hits]

    publish_bad_build(client, bucket, new_build_id(), damage)
    with caplog.at_level(logging.INFO, logger="image_search"):
        service.index.refresh()  # what the background check does once due
        assert service.current().metadata.build_id == first.build_id
    refused = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refused) == 1, caplog.text
    assert DAMAGE[damage] in refused[0].getMessage()
    assert refused[0].getMessage().endswith("; still serving the previous index")
    assert [hit.key for hit in service.search_text("a cat", k=3).hits] == before

    # A fresh process has nothing to fall back on: 503 naming the problem, never a 500.
    api = make_api()
    response = api.get("/health")
    assert response.status_code == 503 and DAMAGE[damage] in response.json()["detail"]


def test_a_publish_cut_off_between_uploads_leaves_readers_on_the_old_build(
    client, bucket, embedder, monkeypatch
) -> None:
    from tests.integration.test_build import FailingPuts

    populate(client, bucket, images(3))
    first = build(client, embedder)
    monkeypatch.setenv("IMAGE_SEARCH_REFRESH_SECONDS", "0.001")
    get_settings.cache_clear()
    api = make_api()
    assert api.get("/health").json()["build_id"] == first.build_id

    put(client, bucket, "animals/new.png", encode(random_image(99)))
    for failing in ("image_faiss_index.bin", "image_metadata.json", "current.json"):
        with pytest.raises(ConnectionResetError):
            build(FailingPuts(client, failing), embedder)
        time.sleep(0.01)
        health = api.get("/health").json()
        assert (health["build_id"], health["count"]) == (first.build_id, 3), failing

    second = build(client, embedder)
    assert second.published and second.count == 4
    wait_for_build(api, second.build_id)


# ---- a build killed mid-way ------------------------------------------------------------------


def test_a_build_killed_with_sigkill_resumes_from_its_finished_shards(
    client, bucket, embedder, proxy: S3Proxy, tmp_path
) -> None:
    populate(client, bucket, images(24))
    proxy.get_delay = 0.15  # slow downloads, so the kill lands mid-build
    proxy.start()
    env = {
        **os.environ,
        "IMAGE_SEARCH_SHARD_SIZE": "4",  # shards of 2 to 8 images: several finish before the kill
        "IMAGE_SEARCH_BATCH_SIZE": "4",
        "IMAGE_SEARCH_DOWNLOAD_WORKERS": "1",
        "IMAGE_SEARCH_BUILD_LEASE_SECONDS": "2",  # renewed every 0.7 s while it runs
    }
    script = [sys.executable, str(ROOT / "scripts" / "build_index.py")]
    with (tmp_path / "build.log").open("wb") as log:
        builder = subprocess.Popen(script, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_a_finished_shard(client, bucket, builder, timeout=120)
        finally:
            builder.send_signal(signal.SIGKILL)
            builder.wait(timeout=30)
    assert builder.returncode == -signal.SIGKILL
    saved = finished_images(client, bucket)  # what the killed run left behind
    assert 0 < saved < 24, (tmp_path / "build.log").read_text()
    assert read_pointer(IndexLocation(client, bucket, "index/")) is None
    # The killed run's lease stays until it expires; then the next run takes it over.
    left = LeaseRecord.model_validate_json(read(client, bucket, "index/work/build-lease.json"))
    assert left.pid == builder.pid
    time.sleep(max(0.0, (left.expires_at - datetime.now(UTC)).total_seconds()) + 0.1)

    # The next run with the same shard size (in-process: the command line only wraps run_build)
    # cuts the same shards and finds the finished ones.
    resumed_run = build(client, embedder, shard_size=4)
    assert resumed_run.published and resumed_run.count == 24
    assert resumed_run.resumed == saved  # every shard finished before the kill was reused
    assert resumed_run.embedded == 24 - saved
    assert finished_images(client, bucket) == 0  # the work files go once published
    resumed = load_index(client, bucket, tmp_path / "resumed")

    fresh = build(client, embedder, full=True)  # one uninterrupted run over the same images
    assert fresh.embedded == 24
    uninterrupted = load_index(client, bucket, tmp_path / "fresh")
    assert [i.key for i in resumed.metadata.items] == [i.key for i in uninterrupted.metadata.items]
    np.testing.assert_allclose(
        stored(resumed.index, 24), stored(uninterrupted.index, 24), atol=1e-5
    )


def wait_for_a_finished_shard(
    client: s3.S3Client, bucket: str, process: subprocess.Popen, *, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the build ended before it finished a shard"
        if finished_images(client, bucket):
            return
        time.sleep(0.05)
    raise AssertionError("no shard finished")


def finished_images(client: s3.S3Client, bucket: str) -> int:
    """Images in the shard results saved under the work prefix."""
    from image_search.build.work import ShardResult

    listed = s3.list_objects(client, bucket=bucket, prefix="index/work/build/shards/")
    results = [obj["Key"] for obj in listed if obj["Key"].endswith("/result.json")]
    return sum(
        len(ShardResult.model_validate_json(s3.get_bytes(client, bucket=bucket, key=key)).rows)
        for key in results
    )


def load_index(client: s3.S3Client, bucket: str, cache: Path) -> LoadedBuild:
    pointer = current_pointer(client, bucket)
    return load_build(IndexLocation(client, bucket, "index/"), pointer=pointer, cache_dir=cache)


# ---- secrets never reach the logs ------------------------------------------------------------


SECRET_KEY = "SeCrEtAcCeSsKeY/ForTheLogsTest+0123456789"
SESSION_TOKEN = "SeSsIoNtOkEnForTheLogsTest0123456789abcdef"
API_KEY = "api-key-for-the-logs-test-5b7e"


def test_logs_never_contain_keys_secrets_or_signatures(
    client, bucket, embedder, monkeypatch, caplog, capsys, on_lambda
) -> None:
    populate(client, bucket, images(3))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("IMAGE_SEARCH_API_KEYS", API_KEY)
    caplog.set_level(logging.DEBUG)  # everything, botocore's debug output included

    build(s3.make_client(), embedder)
    api = make_api()
    urls = []
    for headers in (
        {"x-api-key": API_KEY},
        {"authorization": f"Bearer {API_KEY}"},
        {"x-api-key": API_KEY[:-1]},
    ):
        response = api.post("/image_search/search", json={"query": "cat", "k": 3}, headers=headers)
        urls += [hit["image_url"] for hit in response.json()] if response.status_code == 200 else []
    bad = s3.make_client()
    with pytest.raises(Exception):  # noqa: B017 - any failure will do; its logging is the point
        s3.get_bytes(bad, bucket="no-such-bucket-for-logs", key="x.png")
    lambda_handler = entry_point("search")  # as on Lambda: JSON lines and EMF
    event = json.loads((ROOT / "tests" / "events" / "http-search.json").read_text())
    event["headers"]["x-api-key"] = API_KEY
    assert lambda_handler(event, LambdaContext())["statusCode"] == 200
    event["headers"]["x-api-key"] = API_KEY[:-1]
    assert lambda_handler(event, LambdaContext())["statusCode"] == 401
    printed = capsys.readouterr().out  # what CloudWatch would receive
    assert [json.loads(line) for line in printed.splitlines()]  # every line JSON, some printed

    signatures = {parse_signature(url) for url in urls}
    assert len(urls) == 6 and all(signatures)
    ours = [r for r in caplog.records if not r.name.startswith(("moto", "werkzeug"))]
    text = "\n".join([*(f"{r.name}: {r.getMessage()}" for r in ours), printed])
    assert len(ours) > 10  # the capture did see the product's logs
    for secret in (SECRET_KEY, SESSION_TOKEN, API_KEY, API_KEY[:-1], *signatures):
        assert secret not in text
    # No SigV4 signature of any request either: 64 hex digits after "Signature".
    assert not re.search(r"Signature[=:\s'\"]+[0-9a-f]{64}", text)


def parse_signature(url: str) -> str:
    match = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url)
    assert match, url
    return match.group(1)


def test_the_proxy_passes_everything_through(client, bucket, proxy: S3Proxy) -> None:
    proxy.start()
    via = s3.make_client()
    via.put_object(Bucket=bucket, Key="animals/x.png", Body=b"\x00" * 3_000_000)
    assert read(via, bucket, "animals/x.png") == b"\x00" * 3_000_000
    assert via.head_object(Bucket=bucket, Key="animals/x.png")["ContentLength"] == 3_000_000
    assert [o["Key"] for o in s3.list_objects(via, bucket=bucket)] == ["animals/x.png"]
    assert len(read(client, bucket, "animals/x.png")) == 3_000_000  # stored whole in moto
