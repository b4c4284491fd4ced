"""What a shard writer or a changing bucket can do to a build: at most leave images out of one
build, never publish a wrong vector or a key the plan did not list (issue 21, items 4 and 5).

The stages are driven one by one, as the engines drive them, and the work folder is written
directly between them, as anyone allowed to write it could (on AWS: every shard Lambda).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from botocore.exceptions import ClientError

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.build import work
from image_search.build.merge_stage import merge_build
from image_search.build.options import BuildOptions
from image_search.build.plan_stage import PlannedBuild, plan_build
from image_search.build.report import BuildReport
from image_search.config import get_settings
from image_search.model import images
from image_search.storage import s3
from tests.integration.test_build import build, populate
from tests.support.buckets import put
from tests.support.factories import png_bytes
from tests.support.stages import embed_all

FOLDERS = "animals,nature"
FOREIGN = "private/secret.png"  # in the bucket, outside IMAGE_SEARCH_FOLDERS


@pytest.fixture
def stage_env(bucket: str, client: s3.S3Client, monkeypatch: pytest.MonkeyPatch) -> str:
    """Twelve images in two folders, shards of 2 to 8, and an image the build must never see."""
    monkeypatch.setenv("IMAGE_SEARCH_FOLDERS", FOLDERS)
    monkeypatch.setenv("IMAGE_SEARCH_SHARD_SIZE", "4")
    get_settings.cache_clear()
    layout = {f"{'animals' if i < 6 else 'nature'}/i{i:02d}.png": png_bytes(i) for i in range(12)}
    populate(client, bucket, {**layout, FOREIGN: png_bytes(99)})
    return bucket


def where_and_options(client: s3.S3Client) -> tuple[IndexLocation, BuildOptions]:
    settings = get_settings()
    return IndexLocation(client, settings.bucket, settings.index_prefix), BuildOptions.of(settings)


def plan_and_embed(client: s3.S3Client, embedder) -> PlannedBuild:  # type: ignore[no-untyped-def]
    where, options = where_and_options(client)
    planned = plan_build(where, options, model=embedder.identity)
    assert len(planned.shards) > 1
    embed_all(as_shard_function(where), options, planned, embedder)
    return planned


class ShardRole:
    """A real client with the shard function's S3 permissions (template.yaml): it reads the
    bucket and writes only under the shards' folder; it deletes nothing."""

    def __init__(self, client: s3.S3Client) -> None:
        self._client = client

    def put_object(self, **request: object) -> object:
        if not str(request["Key"]).startswith("index/work/build/shards/"):
            raise denied("PutObject")
        return self._client.put_object(**request)

    def delete_object(self, **request: object) -> object:
        raise denied("DeleteObject")

    def delete_objects(self, **request: object) -> object:
        raise denied("DeleteObjects")

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


def denied(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, operation)


def as_shard_function(where: IndexLocation) -> IndexLocation:
    return IndexLocation(ShardRole(where.client), where.bucket, where.prefix)


def merge(client: s3.S3Client, planned: PlannedBuild) -> BuildReport:
    where, options = where_and_options(client)
    return merge_build(where, options, planned.plan)


def honest(client: s3.S3Client, bucket: str, keys: list[str], embedder) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Each image's own vector, embedded one by one from the bucket's bytes."""
    pictures = [
        images.decode(s3.get_bytes(client, bucket=bucket, key=key), max_pixels=10**8)
        for key in keys
    ]
    return np.vstack([embedder.embed_images([picture]) for picture in pictures])


def assert_published_honestly(client, bucket, embedder, *, keys: set[str]) -> None:  # type: ignore[no-untyped-def]
    """The published build holds exactly ``keys``, each with its own image's vector."""
    where = IndexLocation(client, bucket, "index/")
    pointer = read_pointer(where)
    assert pointer is not None
    metadata, vectors = load_vectors(where, pointer=pointer)
    published = [item.key for item in metadata.items]
    assert set(published) == keys
    np.testing.assert_allclose(vectors, honest(client, bucket, published, embedder), atol=1e-4)


# ---- poisoned shard results ------------------------------------------------------------------


def read_result(client: s3.S3Client, bucket: str, shard_id: str) -> work.ShardResult:
    key = f"index/work/build/shards/{shard_id}/result.json"
    return work.ShardResult.model_validate_json(s3.get_bytes(client, bucket=bucket, key=key))


def write_result(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    key = f"index/work/build/shards/{result.shard_id}/result.json"
    put(client, bucket, key, result.model_dump_json().encode())


def read_npy(client: s3.S3Client, bucket: str, key: str) -> np.ndarray:
    return np.load(io.BytesIO(s3.get_bytes(client, bucket=bucket, key=key)))


def write_npy(client: s3.S3Client, bucket: str, key: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    put(client, bucket, key, buffer.getvalue())


def unit(rows: int, dim: int) -> np.ndarray:
    vectors = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


Poison = Callable[[s3.S3Client, str, work.ShardResult], None]


def one_row_short(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    vectors = read_npy(client, bucket, result.vectors_key)
    write_npy(client, bucket, result.vectors_key, vectors[1:])


def a_nan_row(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    vectors = read_npy(client, bucket, result.vectors_key)
    vectors[0] = np.nan
    write_npy(client, bucket, result.vectors_key, vectors)


def wrong_width(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    write_npy(client, bucket, result.vectors_key, unit(len(result.rows), 24))


def corrupt_vectors(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    put(client, bucket, result.vectors_key, b"\x93NUMPY garbage")


def pickled_vectors(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}] * len(result.rows), dtype=object), allow_pickle=True)
    put(client, bucket, result.vectors_key, buffer.getvalue())


def not_unit_length(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    vectors = read_npy(client, bucket, result.vectors_key)
    write_npy(client, bucket, result.vectors_key, vectors * 3)


def a_foreign_key(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    """The result says its last row is an image outside IMAGE_SEARCH_FOLDERS."""
    etag = client.head_object(Bucket=bucket, Key=FOREIGN)["ETag"].strip('"')
    rows = result.rows
    rows.keys[-1], rows.etags[-1] = FOREIGN, etag
    write_result(client, bucket, result)


def a_foreign_input(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    """Input and result agree on the foreign image: the plan's shard id no longer does."""
    a_foreign_key(client, bucket, result)
    key = f"index/work/build/shards/{result.shard_id}/input.json"
    saved = work.ShardInput.model_validate_json(s3.get_bytes(client, bucket=bucket, key=key))
    saved.objects = result.rows
    put(client, bucket, key, saved.model_dump_json().encode())


def rows_swapped(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    rows = result.rows
    for column in (rows.keys, rows.etags, rows.sizes):
        column[0], column[1] = column[1], column[0]  # type: ignore[index]
    write_result(client, bucket, result)


def another_model(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    write_result(client, bucket, result.model_copy(update={"model": "another/model"}))


def vectors_elsewhere(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    """The result names a vectors file outside its own folder (here: another shard's)."""
    other = [
        k for k in work_keys(client, bucket) if k.endswith(".npy") and result.shard_id not in k
    ]
    write_result(client, bucket, result.model_copy(update={"vectors_key": other[0]}))


def unreadable_result(client: s3.S3Client, bucket: str, result: work.ShardResult) -> None:
    put(client, bucket, f"index/work/build/shards/{result.shard_id}/result.json", b'{"shard_')


def work_keys(client: s3.S3Client, bucket: str) -> list[str]:
    listed = s3.list_objects(client, bucket=bucket, prefix="index/work/build/shards/")
    return [obj["Key"] for obj in listed]


POISONS: dict[str, Poison] = {
    "one-row-short": one_row_short,
    "nan-row": a_nan_row,
    "wrong-width": wrong_width,
    "corrupt-vectors": corrupt_vectors,
    "pickled-vectors": pickled_vectors,
    "not-unit-length": not_unit_length,
    "foreign-key": a_foreign_key,
    "foreign-input": a_foreign_input,
    "rows-swapped": rows_swapped,
    "another-model": another_model,
    "vectors-elsewhere": vectors_elsewhere,
    "unreadable-result": unreadable_result,
}


# The four cases run by default; the other poisons with the slow tests (make test-all).
DEFAULT = {"one-row-short", "nan-row", "wrong-width", "foreign-key"}


@pytest.mark.parametrize(
    "poison",
    [name if name in DEFAULT else pytest.param(name, marks=pytest.mark.slow) for name in POISONS],
)
def test_a_poisoned_shard_only_leaves_its_own_images_out_for_one_build(
    client, stage_env, embedder, poison: str
) -> None:
    bucket = stage_env
    planned = plan_and_embed(client, embedder)
    victim = planned.shards[0]
    POISONS[poison](client, bucket, read_result(client, bucket, victim.shard_id))

    report = merge(client, planned)

    everything = {obj.key for shard in planned.shards for obj in shard.objects}
    own = {obj.key for obj in victim.objects}
    assert FOREIGN not in everything
    assert report.published and report.count == len(everything) - len(own)
    assert_published_honestly(client, bucket, embedder, keys=everything - own)
    # A rewritten input no longer says which images were the shard's: none are named then.
    assert {s.key for s in report.skipped} == (set() if poison == "foreign-input" else own)
    assert all("result was refused" in s.reason and s.cause == "download" for s in report.skipped)

    # The next build embeds the left-out images, and only them.
    healed = build(client, embedder)
    assert (healed.published, healed.count, healed.embedded, healed.skipped) == (
        True,
        len(everything),
        len(own),
        [],
    )
    assert_published_honestly(client, bucket, embedder, keys=everything)


def test_a_result_poisoned_before_its_shard_runs_is_embedded_again_in_the_same_run(
    client, stage_env, embedder
) -> None:
    """A result left by an earlier, interrupted run is checked when the shard stage finds it,
    with no more S3 permissions than a shard function has."""
    bucket = stage_env
    interrupted = plan_and_embed(client, embedder)  # never merged
    victim = interrupted.shards[0]
    a_nan_row(client, bucket, read_result(client, bucket, victim.shard_id))

    where, options = where_and_options(client)
    planned = plan_build(where, options, model=embedder.identity)
    embed_all(as_shard_function(where), options, planned, embedder)
    report = merge_build(where, options, planned.plan)

    assert report.published and report.count == 12 and report.skipped == []
    assert (report.embedded, report.resumed) == (len(victim.objects), 12 - len(victim.objects))
    assert_published_honestly(client, bucket, embedder, keys=set(stage_keys(interrupted)))


def test_a_full_build_ignores_saved_results(client, stage_env, embedder) -> None:
    bucket = stage_env
    interrupted = plan_and_embed(client, embedder)
    for shard in interrupted.shards:
        wrong_width(client, bucket, read_result(client, bucket, shard.shard_id))

    report = build(client, embedder, full=True)

    assert (report.published, report.count, report.embedded, report.resumed) == (True, 12, 12, 0)
    assert_published_honestly(client, bucket, embedder, keys=set(stage_keys(interrupted)))
    assert work_keys(client, bucket) == []  # the earlier run's results went with the publish


def stage_keys(planned: PlannedBuild) -> list[str]:
    return [obj.key for shard in planned.shards for obj in shard.objects]


# ---- an image replaced during the build ------------------------------------------------------


def test_an_image_replaced_between_plan_and_shard_is_skipped_then_embedded_anew(
    client, stage_env, embedder
) -> None:
    bucket = stage_env
    where, options = where_and_options(client)
    planned = plan_build(where, options, model=embedder.identity)
    put(client, bucket, "animals/i01.png", png_bytes(101))  # after the listing, before the fetch
    embed_all(where, options, planned, embedder)

    report = merge(client, planned)

    assert report.published and report.count == 11
    (skipped,) = report.skipped
    assert (skipped.key, skipped.cause) == ("animals/i01.png", "download")
    assert skipped.reason == "replaced during the build; the next build embeds it"
    everything = set(stage_keys(planned))
    assert_published_honestly(client, bucket, embedder, keys=everything - {"animals/i01.png"})

    again = build(client, embedder)
    assert (again.published, again.count, again.embedded, again.skipped) == (True, 12, 1, [])
    assert_published_honestly(client, bucket, embedder, keys=everything)
    metadata, _ = load_vectors(where, pointer=read_pointer(where))  # type: ignore[arg-type]
    (item,) = [item for item in metadata.items if item.key == "animals/i01.png"]
    assert item.etag == client.head_object(Bucket=bucket, Key=item.key)["ETag"].strip('"')
