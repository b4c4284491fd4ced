"""The scheduled build handler end to end: moto S3 over HTTP, a tiny random CLIP, real FAISS."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from image_search.build import lambda_handler as lambda_build
from image_search.build.lambda_handler import MAX_CONTINUATIONS, build_handler
from image_search.config import get_settings
from image_search.errors import NoImagesError
from image_search.index import faiss_index
from image_search.storage import artefacts, checkpoint, manifest, s3
from tests.conftest import put
from tests.factories import encode, random_image

SCHEDULED_EVENT = json.loads(
    (Path(__file__).resolve().parent.parent / "infra/events/schedule.json").read_text()
)
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:image-search-index-build"


@dataclass
class FakeContext:
    """Lambda's context object, with a fixed time left (the builder stops at < 45 s)."""

    remaining_ms: int = 900_000
    invoked_function_arn: str = FUNCTION_ARN

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


SHORT = FakeContext(remaining_ms=30_000)  # past the builder's margin: stop after one batch
LONG = FakeContext()


@dataclass
class FakeLambda:
    """Records the asynchronous self-invocations that continue an unfinished build."""

    calls: list[dict[str, object]] = field(default_factory=list)

    def invoke(self, **kwargs: object) -> dict[str, int]:
        self.calls.append(kwargs)
        return {"StatusCode": 202}

    def next_event(self) -> dict[str, object]:
        call = self.calls[-1]
        assert call["FunctionName"] == FUNCTION_ARN and call["InvocationType"] == "Event"
        return json.loads(call["Payload"])  # type: ignore[arg-type]


@pytest.fixture
def fake_lambda(monkeypatch: pytest.MonkeyPatch) -> FakeLambda:
    fake = FakeLambda()
    monkeypatch.setattr(lambda_build, "_lambda_client", lambda: fake)
    return fake


@pytest.fixture
def small_batches(bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("IMAGE_SEARCH_BATCH_SIZE", "4")
    get_settings.cache_clear()
    return bucket


def populate(client: s3.S3Client, bucket: str, count: int, *, start: int = 0) -> None:
    for i in range(start, start + count):
        put(
            client,
            bucket,
            f"{'animals' if i % 2 else 'nature'}/img{i:03d}.png",
            encode(random_image(i)),
        )


def published(client: s3.S3Client, bucket: str) -> tuple[manifest.Pointer, np.ndarray]:
    pointer = artefacts.read_pointer(client, bucket=bucket, index_prefix="index/")
    assert pointer is not None
    _, vectors = artefacts.load_vectors(client, bucket=bucket, pointer=pointer)
    return pointer, vectors


def test_scheduled_event_runs_an_incremental_build(client, bucket, fake_lambda) -> None:
    populate(client, bucket, 5)
    first = build_handler(SCHEDULED_EVENT, LONG)
    assert first["state"] == "published" and first["count"] == first["embedded"] == 5
    json.dumps(first)  # the summary is what Lambda returns: it must serialise

    populate(client, bucket, 1, start=5)
    client.delete_object(Bucket=bucket, Key="nature/img000.png")
    second = build_handler(SCHEDULED_EVENT, LONG)
    assert (second["embedded"], second["added"], second["removed"], second["reused"]) == (
        1,
        1,
        1,
        4,
    )
    assert second["published"] and second["count"] == 5 and second["build_id"] != first["build_id"]

    third = build_handler(SCHEDULED_EVENT, LONG)
    assert third["state"] == "unchanged" and third["embedded"] == 0
    assert third["build_id"] == second["build_id"] and not fake_lambda.calls


def test_the_model_is_loaded_once_per_process(client, bucket, fake_lambda) -> None:
    from image_search.model.cache import _embedder as embedder_for

    populate(client, bucket, 2)
    build_handler(SCHEDULED_EVENT, LONG)
    before = embedder_for.cache_info()
    build_handler(SCHEDULED_EVENT, LONG)
    after = embedder_for.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 1


def test_partial_runs_give_the_same_index_as_one_full_run(
    client, small_batches, fake_lambda
) -> None:
    bucket = small_batches
    populate(client, bucket, 10)

    # Two runs cut short by the deadline, each continuing the previous one through the
    # checkpoint and a self-invocation, then a run with time enough to finish and publish.
    first = build_handler(SCHEDULED_EVENT, SHORT)
    assert first["state"] == "partial" and first["embedded"] == 4 and first["continued"]
    assert artefacts.read_pointer(client, bucket=bucket, index_prefix="index/") is None
    second = build_handler(fake_lambda.next_event(), SHORT)
    assert second["state"] == "partial" and second["embedded"] == 4 and second["continuation"] == 1
    third = build_handler(fake_lambda.next_event(), LONG)
    assert third["state"] == "published" and third["embedded"] == 2 and third["count"] == 10
    assert len(fake_lambda.calls) == 2  # a finished build does not continue
    assert checkpoint.load(client, bucket=bucket, index_prefix="index/") is None
    resumed_pointer, resumed = published(client, bucket)

    full = build_handler({"full": True}, LONG)
    assert full["state"] == "published" and full["embedded"] == 10
    full_pointer, fresh = published(client, bucket)
    assert full_pointer.build_id != resumed_pointer.build_id

    resumed_meta, _ = artefacts.load_vectors(client, bucket=bucket, pointer=resumed_pointer)
    fresh_meta, _ = artefacts.load_vectors(client, bucket=bucket, pointer=full_pointer)
    assert [i.key for i in resumed_meta.items] == [i.key for i in fresh_meta.items]
    assert resumed_meta.folders == fresh_meta.folders
    np.testing.assert_allclose(resumed, fresh, atol=1e-5)
    cache = Path(get_settings().index_cache_dir)
    a = artefacts.load(client, bucket=bucket, pointer=resumed_pointer, cache_dir=cache).index
    b = artefacts.load(client, bucket=bucket, pointer=full_pointer, cache_dir=cache).index
    for query in fresh[:3]:
        assert faiss_index.search(a, query, k=5).ids == faiss_index.search(b, query, k=5).ids


def test_a_run_without_progress_does_not_continue(client, small_batches, fake_lambda) -> None:
    for name in ("a", "b"):
        put(client, small_batches, f"animals/{name}.jpg", b"not an image")
    report = build_handler(SCHEDULED_EVENT, SHORT)
    assert report["state"] == "partial" and report["embedded"] == 0 and report["skipped"] == 2
    assert report["continued"] is False and not fake_lambda.calls


def test_continuations_are_capped(client, small_batches, fake_lambda) -> None:
    populate(client, small_batches, 6)
    event = {"source": lambda_build.CONTINUATION_SOURCE, "continuation": MAX_CONTINUATIONS}
    report = build_handler(event, SHORT)
    assert report["state"] == "partial" and report["continued"] is False and not fake_lambda.calls


def test_a_failed_self_invocation_leaves_the_checkpoint_for_the_schedule(
    client, small_batches, monkeypatch
) -> None:
    class Denied:
        def invoke(self, **_: object) -> None:
            raise PermissionError("AccessDeniedException")

    monkeypatch.setattr(lambda_build, "_lambda_client", lambda: Denied())
    populate(client, small_batches, 6)
    assert build_handler(SCHEDULED_EVENT, SHORT)["continued"] is False
    saved = checkpoint.load(client, bucket=small_batches, index_prefix="index/")
    assert saved is not None and len(saved.keys) == 4
    assert build_handler(SCHEDULED_EVENT, LONG)["embedded"] == 2  # the schedule resumes it


def test_an_empty_bucket_fails_the_invocation(bucket, fake_lambda) -> None:
    # Raising (not returning an error summary) is what makes Lambda count an error and alarm.
    with pytest.raises(NoImagesError):
        build_handler(SCHEDULED_EVENT, LONG)


def test_a_run_while_another_build_holds_the_lease_is_busy_not_an_error(
    client, bucket, fake_lambda
) -> None:
    from image_search.storage import lease

    populate(client, bucket, 2)
    other = lease.acquire(client, bucket=bucket, index_prefix="index/", seconds=600)
    report = build_handler(SCHEDULED_EVENT, LONG)
    assert report["state"] == "busy" and report["detail"].startswith("another build is running")
    assert artefacts.read_pointer(client, bucket=bucket, index_prefix="index/") is None
    assert not fake_lambda.calls
    other.release()
    assert build_handler(SCHEDULED_EVENT, LONG)["state"] == "published"
