"""The index build end to end: moto S3 over HTTP, a tiny random CLIP, real FAISS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts.loader import LoadedBuild, load_build, load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import POINTER_FILE
from image_search.build.pipeline import run_build
from image_search.build.report import BuildReport
from image_search.config import get_settings
from image_search.errors import NoImagesError
from image_search.model import images
from image_search.model.torch_clip import ClipEmbedder
from image_search.storage import s3
from tests.support.buckets import put
from tests.support.factories import (
    BROKEN_KEYS,
    IGNORED_KEYS,
    encode,
    phone_bytes,
    random_image,
    sample_bucket_layout,
)
from tests.support.paths import ROOT
from tests.support.vectors import stored


def populate(client: s3.S3Client, bucket: str, layout: dict[str, bytes]) -> None:
    for key, data in layout.items():
        put(client, bucket, key, data)


def build(
    client: s3.S3Client, embedder: ClipEmbedder, *, full: bool = False, dry_run: bool = False
) -> BuildReport:
    return run_build(get_settings(), client=client, embedder=embedder, full=full, dry_run=dry_run)


def current(client: s3.S3Client, bucket: str, tmp_path: Path) -> LoadedBuild:
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    return load_build(
        IndexLocation(client, bucket, "index/"), pointer=pointer, cache_dir=tmp_path / "read-cache"
    )


def test_full_build_indexes_every_valid_image(client, bucket, embedder, tmp_path) -> None:
    layout = sample_bucket_layout()
    populate(client, bucket, layout)
    report = build(client, embedder)

    valid = set(layout) - BROKEN_KEYS - IGNORED_KEYS
    published = current(client, bucket, tmp_path)
    meta = published.metadata
    assert report.published and report.count == meta.count == len(valid) == published.index.ntotal
    assert {item.key for item in meta.items} == valid
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    skipped = load_vectors(IndexLocation(client, bucket, "index/"), pointer=pointer)[0].skipped
    assert {s.key for s in skipped} == BROKEN_KEYS == {s.key for s in report.skipped}
    assert meta.model == get_settings().model and meta.dim == embedder.dim
    # Folders are contiguous id ranges, in id order, nested keys in their top-level folder.
    assert meta.folders == {"animals": (0, 4), "nature": (4, 8), "vehicles": (8, 12)}
    assert all(
        meta.items[row].folder == name
        for name, (a, b) in meta.folders.items()
        for row in range(a, b)
    )

    # Every image's own vector is its top-1 with score ≈ 1.
    for row, item in enumerate(meta.items):
        picture = images.decode(
            client.get_object(Bucket=bucket, Key=item.key)["Body"].read(), max_pixels=10**8
        )
        hits = published.index.search(embedder.embed_images([picture]), k=1)
        assert hits.ids == [row] and hits.scores[0] == pytest.approx(1.0, abs=1e-4), item.key


def test_phone_photos_are_listed_and_indexed(client, bucket, embedder, tmp_path) -> None:
    layout = {
        "phone/IMG_0001.HEIC": phone_bytes(random_image(1), "HEIF"),
        "phone/IMG_0002.heif": phone_bytes(random_image(2), "HEIF"),
        "phone/IMG_0003.avif": phone_bytes(random_image(3), "AVIF"),
        "phone/IMG_0004.png": encode(random_image(4)),
    }
    populate(client, bucket, layout)
    report = build(client, embedder)
    assert report.published and not report.skipped
    assert {item.key for item in current(client, bucket, tmp_path).metadata.items} == set(layout)


def test_incremental_build_embeds_only_changes_and_matches_a_full_build(
    client, bucket, embedder, tmp_path
) -> None:
    populate(client, bucket, {f"animals/a{i}.png": encode(random_image(i)) for i in range(6)})
    populate(client, bucket, {f"nature/n{i}.png": encode(random_image(100 + i)) for i in range(6)})
    first = build(client, embedder)
    assert first.embedded == 12

    put(client, bucket, "animals/new1.png", encode(random_image(200)))
    put(client, bucket, "nature/new2.png", encode(random_image(201)))
    put(client, bucket, "animals/a3.png", encode(random_image(202)))  # changed content → new ETag
    client.delete_object(Bucket=bucket, Key="nature/n0.png")

    incremental = build(client, embedder)
    assert (incremental.embedded, incremental.added, incremental.updated, incremental.removed) == (
        3,
        2,
        1,
        1,
    )
    assert incremental.reused == 10
    inc = current(client, bucket, tmp_path)

    full = build(client, embedder, full=True)
    assert full.embedded == 13
    fresh = current(client, bucket, tmp_path)

    assert [i.key for i in inc.metadata.items] == [i.key for i in fresh.metadata.items]
    for query in embedder.embed_texts(["a cat", "green forest", "red car"]):
        a = inc.index.search(query, k=8)
        b = fresh.index.search(query, k=8)
        assert a.ids == b.ids
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_nothing_changed_publishes_nothing(client, bucket, embedder) -> None:
    populate(client, bucket, {f"animals/a{i}.png": encode(random_image(i)) for i in range(3)})
    first = build(client, embedder)
    again = build(client, embedder)
    assert not again.published and again.embedded == 0 and again.build_id == first.build_id


def test_model_change_forces_a_full_build(client, bucket, embedder, tmp_path, monkeypatch) -> None:
    from tests.support.factories import save_tiny_clip

    populate(client, bucket, {f"animals/a{i}.png": encode(random_image(i)) for i in range(4)})
    build(client, embedder)
    other_dir = save_tiny_clip(tmp_path / "other", seed=1)
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(other_dir))
    get_settings.cache_clear()
    other = ClipEmbedder(source=str(other_dir), cache_dir=tmp_path)
    report = build(client, other)
    assert report.embedded == 4 and report.published
    assert current(client, bucket, tmp_path).metadata.model == str(other_dir)


def test_dry_run_publishes_nothing(client, bucket, embedder) -> None:
    populate(client, bucket, {"animals/a.png": encode(random_image(1))})
    report = build(client, embedder, dry_run=True)
    assert report.added == 1 and not report.published
    assert read_pointer(IndexLocation(client, bucket, "index/")) is None


class FailingPuts:
    """A real client that fails on the upload of one key: a publish cut off half-way."""

    def __init__(self, client: s3.S3Client, failing_suffix: str) -> None:
        self._client, self._suffix = client, failing_suffix

    def put_object(self, **kwargs: object) -> object:
        if str(kwargs["Key"]).endswith(self._suffix):
            raise ConnectionResetError("connection lost mid-publish")
        return self._client.put_object(**kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


@pytest.mark.parametrize("failing", ["image_metadata.json", POINTER_FILE])
def test_failed_publish_leaves_the_old_build_serving(
    client, bucket, embedder, tmp_path, failing
) -> None:
    populate(client, bucket, {f"animals/a{i}.png": encode(random_image(i)) for i in range(3)})
    first = build(client, embedder)
    before = client.get_object(Bucket=bucket, Key="index/current.json")["Body"].read()

    put(client, bucket, "animals/extra.png", encode(random_image(50)))
    with pytest.raises(ConnectionResetError):
        build(FailingPuts(client, failing), embedder)

    assert client.get_object(Bucket=bucket, Key="index/current.json")["Body"].read() == before
    served = current(client, bucket, tmp_path)
    assert served.metadata.build_id == first.build_id and served.index.ntotal == 3
    # ... and the next build succeeds.
    assert build(client, embedder).count == 4


def builds_in_a_row(
    client: s3.S3Client, bucket: str, embedder: ClipEmbedder, count: int
) -> list[str]:
    """The ids of ``count`` builds, each published after adding one image."""
    ids = []
    for i in range(count):
        put(client, bucket, f"animals/a{i}.png", encode(random_image(i)))
        ids.append(build(client, embedder).build_id)
    return ids


def test_old_builds_are_pruned(client, bucket, embedder, monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_SEARCH_KEEP_BUILDS", "2")
    monkeypatch.setenv("IMAGE_SEARCH_PRUNE_GRACE_SECONDS", "0")  # prune at once
    get_settings.cache_clear()
    ids = builds_in_a_row(client, bucket, embedder, 3)
    keys = [o["Key"] for o in s3.list_objects(client, bucket=bucket, prefix="index/builds/")]
    assert {k.split("/")[2] for k in keys} == set(ids[1:])


def test_listing_follows_pagination_past_1000_objects(client, bucket) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def upload(i: int) -> None:
        client.put_object(Bucket=bucket, Key=f"nature/{i:05d}.jpg", Body=b"x")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, range(1105)))
    listed = s3.list_images(client, bucket=bucket, folders=[], exclude_prefix="index/")
    assert len(listed) == 1105


def test_folders_setting_limits_the_build(client, bucket, embedder, monkeypatch, tmp_path) -> None:
    populate(
        client,
        bucket,
        {"animals/a.png": encode(random_image(1)), "nature/n.png": encode(random_image(2))},
    )
    monkeypatch.setenv("IMAGE_SEARCH_FOLDERS", "nature/")
    get_settings.cache_clear()
    build(client, embedder)
    assert current(client, bucket, tmp_path).metadata.folders == {"nature": (0, 1)}


def test_empty_bucket_is_an_error(client, bucket, embedder) -> None:
    with pytest.raises(NoImagesError):
        build(client, embedder)


class CrashingEmbedder:
    """The embedder, raising after ``batches`` calls: a build that dies mid-way."""

    def __init__(self, embedder: ClipEmbedder, *, batches: int) -> None:
        self.source, self.batch_size = embedder.source, embedder.batch_size
        self.identity = embedder.identity
        self._embedder, self._left = embedder, batches

    def embed_images(self, batch):  # type: ignore[no-untyped-def]
        if self._left == 0:
            raise MemoryError("killed mid-shard")
        self._left -= 1
        return self._embedder.embed_images(batch)


def finished_shards(client: s3.S3Client, bucket: str) -> int:
    listed = s3.list_objects(client, bucket=bucket, prefix="index/work/build/shards/")
    return sum(1 for obj in listed if obj["Key"].endswith("/result.json"))


def test_an_interrupted_build_resumes_from_its_finished_shards(
    client, bucket, embedder, tmp_path, monkeypatch
) -> None:
    populate(client, bucket, {f"animals/a{i:02d}.png": encode(random_image(i)) for i in range(40)})
    monkeypatch.setenv("IMAGE_SEARCH_SHARD_SIZE", "8")
    get_settings.cache_clear()
    options = get_settings()
    # Batches of 8, shards of 4 to 16 images: the three batches before the crash finish at least
    # the first shard.
    with pytest.raises(MemoryError):
        run_build(options, client=client, embedder=CrashingEmbedder(embedder, batches=3))
    assert read_pointer(IndexLocation(client, bucket, "index/")) is None
    finished = finished_shards(client, bucket)
    assert finished >= 1

    second = run_build(options, client=client, embedder=embedder)
    assert second.published and second.count == 40
    assert second.resumed > 0 and second.embedded + second.resumed == 40
    assert finished_shards(client, bucket) == 0  # the work files go once published
    resumed = current(client, bucket, tmp_path)
    one_run = build(client, embedder, full=True)
    assert one_run.embedded == 40 and one_run.resumed == 0
    fresh = current(client, bucket, tmp_path)
    assert [i.key for i in resumed.metadata.items] == [i.key for i in fresh.metadata.items]
    np.testing.assert_allclose(stored(resumed.index, 40), stored(fresh.index, 40), atol=1e-5)


def run_cli(*args: str, env_overrides: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ}
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_index.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_cli_builds_and_prints_a_summary(client, bucket) -> None:
    populate(
        client,
        bucket,
        {"animals/a.png": encode(random_image(1)), "nature/b.png": encode(random_image(2))},
    )
    done = run_cli("--workers", "2", env_overrides={})
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("published") and "added=2" in summary and "skipped=0" in summary
    pointer = json.loads(client.get_object(Bucket=bucket, Key="index/current.json")["Body"].read())
    assert pointer["build_id"] in summary


def test_cli_without_a_bucket_setting_fails_with_one_line(s3_endpoint, monkeypatch) -> None:
    done = run_cli(env_overrides={"IMAGE_SEARCH_BUCKET": None})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: IMAGE_SEARCH_BUCKET is not set (or pass --bucket)"
    ]


def test_a_mistyped_model_directory_is_named_before_anything_is_planned(
    client, bucket, capsys
) -> None:
    from image_search.cli import main

    put(client, bucket, "animals/a.png", encode(random_image(1)))
    assert main(["build", "--model", "./modles/clip-vit-b32"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    [error] = [line for line in lines if line.startswith("error:")]
    assert "'./modles/clip-vit-b32': no such directory" in error, lines
    assert "hub" not in error and "Repo id" not in error
    written = s3.list_objects(client, bucket=bucket, prefix="index/")
    assert [o["Key"] for o in written] == []  # no plan, no lease


@pytest.mark.parametrize(
    ("args", "with_image", "reason"),
    [
        (["--bucket", "no-such-bucket"], False, "does not exist"),
        ([], False, "no images found"),
        (["--model", "/nonexistent/model"], True, "cannot load model"),
    ],
    ids=["unknown-bucket", "no-images", "bad-model"],
)
def test_cli_fails_with_one_line(client, bucket, capsys, args, with_image, reason) -> None:
    from image_search.cli import main

    if with_image:
        put(client, bucket, "animals/a.png", encode(random_image(1)))
    assert main(["build", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and reason in errors[0], lines
