"""The Ray engine on a real local Ray (2 CPUs, 2 worker processes) against the moto S3 server:
it publishes what the local engine publishes, and a worker killed mid-shard changes nothing.

The workers reach S3 through a proxy (tests/integration/test_faults.py) so that one test can slow
their downloads down enough to kill a worker while it is inside a shard.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import Metadata
from image_search.build import ray_engine
from image_search.build.pipeline import run_build
from image_search.build.report import BuildReport
from image_search.config import Settings, get_settings
from image_search.storage import s3
from tests.integration.test_build import CrashingEmbedder, finished_shards
from tests.integration.test_faults import S3Proxy
from tests.support.buckets import put
from tests.support.factories import encode, random_image, sample_bucket_layout
from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def ray_workers_s3(s3_endpoint: str) -> Iterator[S3Proxy]:
    """A local Ray of 2 CPUs whose workers reach moto through a proxy; yields the proxy."""
    proxy = S3Proxy(s3_endpoint).start()
    with pytest.MonkeyPatch.context() as env:
        # Ray passes the S3 endpoint and credentials to its workers (runtime_env env_vars).
        env.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        assert ray_engine.connect(Settings(bucket="not-used-here"), num_cpus=2)
    try:
        yield proxy
    finally:
        ray.shutdown()
        proxy.stop()


def published(client: s3.S3Client, bucket: str) -> tuple[Metadata, np.ndarray]:
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    return load_vectors(IndexLocation(client, bucket, "index/"), pointer=pointer)


def assert_same_as_local(client: s3.S3Client, bucket: str, embedder, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    on_ray, ray_vectors = published(client, bucket)
    local = run_build(settings, client=client, embedder=embedder, full=True)
    assert local.published
    here, local_vectors = published(client, bucket)
    assert [item.key for item in on_ray.items] == [item.key for item in here.items]
    assert on_ray.folders == here.folders and on_ray.skipped == here.skipped
    # The photo fields, read by Ray's workers from the bytes they fetched.
    assert [item.photo for item in on_ray.items] == [item.photo for item in here.items]
    assert all(item.photo is not None for item in on_ray.items)
    np.testing.assert_allclose(ray_vectors, local_vectors, atol=1e-5)


def test_ray_publishes_what_the_local_engine_publishes(
    ray_workers_s3, client, bucket, embedder, monkeypatch
) -> None:
    for key, data in sample_bucket_layout().items():
        put(client, bucket, key, data)
    monkeypatch.setenv("IMAGE_SEARCH_SHARD_SIZE", "4")
    get_settings.cache_clear()
    settings = get_settings()
    report = ray_engine.run_on_ray(settings, client=client)
    assert report.published and report.count == 12 and report.embedded == 12
    assert len(report.skipped) == 3
    assert ray.is_initialized()  # the caller's Ray is left running
    assert_same_as_local(client, bucket, embedder, settings)


def test_a_build_interrupted_elsewhere_resumes_on_ray_from_its_finished_shards(
    ray_workers_s3, client, bucket, embedder, monkeypatch
) -> None:
    """Shards are results in S3, not state of an engine: a local build that crashed leaves
    finished shards that a Ray build takes up instead of embedding them again."""
    for i in range(24):
        put(client, bucket, f"animals/a{i:02d}.png", encode(random_image(i)))
    monkeypatch.setenv("IMAGE_SEARCH_SHARD_SIZE", "8")
    get_settings.cache_clear()
    settings = get_settings()
    with pytest.raises(MemoryError):
        run_build(settings, client=client, embedder=CrashingEmbedder(embedder, batches=2))
    assert finished_shards(client, bucket) >= 1
    report = ray_engine.run_on_ray(settings, client=client)
    assert report.published and report.count == 24
    assert report.resumed > 0 and report.embedded + report.resumed == 24
    assert_same_as_local(client, bucket, embedder, settings)


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_retried_and_changes_nothing(
    ray_workers_s3, client, bucket, embedder, monkeypatch
) -> None:
    for i in range(16):
        put(client, bucket, f"animals/a{i:02d}.png", encode(random_image(i)))
    monkeypatch.setenv("IMAGE_SEARCH_SHARD_SIZE", "8")
    monkeypatch.setenv("IMAGE_SEARCH_DOWNLOAD_WORKERS", "1")
    get_settings.cache_clear()
    settings = get_settings()
    ray_workers_s3.get_delay = 0.25  # one image every 0.25 s per worker: shards take seconds
    ray_workers_s3.gets.clear()
    outcome: list[BuildReport | BaseException] = []

    def build() -> None:
        try:
            outcome.append(ray_engine.run_on_ray(settings, client=client))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    builder = threading.Thread(target=build)
    builder.start()
    try:
        victim = wait_for_a_worker_inside_a_shard(ray_workers_s3, timeout=120)
        images_before_kill = images_fetched(ray_workers_s3)
        os.kill(victim, signal.SIGKILL)
        # The kill landed before the build was done.
        assert read_pointer(IndexLocation(client, bucket, "index/")) is None
    finally:
        builder.join(timeout=300)
        ray_workers_s3.get_delay = 0.0
    (report,) = outcome
    assert isinstance(report, BuildReport), report
    assert report.published and report.count == 16 and report.embedded == 16
    assert 0 < images_before_kill
    # The killed worker's shard was fetched again by its restarted actor.
    assert any(count > 1 for key, count in ray_workers_s3.gets.items() if key.endswith(".png"))
    assert_same_as_local(client, bucket, embedder, settings)


def wait_for_a_worker_inside_a_shard(proxy: S3Proxy, *, timeout: float) -> int:
    """The pid of a Ray worker running ShardWorker.embed, once it has fetched an image."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = worker_pids("ray::ShardWorker.embed")
        if busy and images_fetched(proxy):
            return busy[0]
        time.sleep(0.05)
    raise AssertionError("no worker started a shard")


def worker_pids(title: str) -> list[int]:
    """Processes whose title (Ray sets it to the running actor method) starts with ``title``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(title.encode()):
                found.append(int(entry.name))
    return found


def images_fetched(proxy: S3Proxy) -> int:
    return sum(count for key, count in proxy.gets.items() if key.endswith(".png"))


@pytest.mark.slow
def test_the_command_line_builds_on_a_ray_it_starts(client, bucket, tmp_path) -> None:
    """``scripts/build_index.py --engine ray`` with no address: a Ray of its own, then one line."""
    import subprocess
    import sys

    for i in range(6):
        put(client, bucket, f"nature/n{i}.png", encode(random_image(i)))
    script = ROOT / "scripts" / "build_index.py"
    done = subprocess.run(
        [sys.executable, str(script), "--engine", "ray", "--shard-size", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = done.stdout.strip().splitlines()
    assert line.startswith("published ") and " count=6 " in line and " embedded=6 " in line
    assert read_pointer(IndexLocation(client, bucket, "index/")) is not None
