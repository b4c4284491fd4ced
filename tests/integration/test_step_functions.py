"""The Step Functions engine: the state machine in template.yaml replayed offline (tests/
state_machine.py) through handler.py's real entry points, against moto S3, with the payloads
Step Functions sends checked against the recorded ones in tests/events/sfn-*.json."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.storage import s3
from tests.support.buckets import put
from tests.support.factories import encode, random_image, sample_bucket_layout
from tests.support.paths import EVENTS
from tests.support.state_machine import Execution, ExecutionFailed, real_handlers


def recorded(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def assert_same_shape(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    assert set(actual) == set(expected), (sorted(actual), sorted(expected))
    for key, value in expected.items():
        assert type(actual[key]) is type(value), key


@pytest.fixture
def build_env(bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The build functions' environment."""
    monkeypatch.setenv("IMAGE_SEARCH_SHARD_SIZE", "4")
    get_settings.cache_clear()
    return bucket


def published(client: s3.S3Client, bucket: str) -> tuple[Any, np.ndarray]:
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    return load_vectors(IndexLocation(client, bucket, "index/"), pointer=pointer)


def work_files(client: s3.S3Client, bucket: str, prefix: str = "index/work/") -> list[str]:
    return [o["Key"] for o in s3.list_objects(client, bucket=bucket, prefix=prefix)]


def test_an_execution_publishes_what_the_local_engine_publishes(
    client, build_env, embedder
) -> None:
    bucket = build_env
    for key, data in sample_bucket_layout().items():
        put(client, bucket, key, data)
    execution = Execution(client, bucket, real_handlers())
    summary = execution.run(recorded("sfn-execution-input.json"))
    assert summary["state"] == "published" and summary["count"] == 12 and summary["skipped"] == 3

    # What each function was sent has the recorded shape: the schedule's event, one item per
    # shard from the ItemSelector, the plan's id for the merge.
    assert execution.payloads["BuildPlanFunction"] == [recorded("sfn-execution-input.json")]
    shards = execution.payloads["EmbedShardFunction"]
    assert len(shards) > 1 and len({p["shard_id"] for p in shards}) == len(shards)
    for payload in shards:
        assert_same_shape(recorded("sfn-embed-shard.json"), payload)
    (merge,) = execution.payloads["BuildMergeFunction"]
    assert_same_shape(recorded("sfn-merge.json"), merge)
    assert work_files(client, bucket) == []  # plan, shards and map results all deleted
    on_lambda, lambda_vectors = published(client, bucket)

    local = run_build(get_settings(), client=client, embedder=embedder, full=True)
    assert local.published
    here, local_vectors = published(client, bucket)
    assert [i.key for i in on_lambda.items] == [i.key for i in here.items]
    assert on_lambda.folders == here.folders
    assert on_lambda.skipped == here.skipped
    np.testing.assert_allclose(lambda_vectors, local_vectors, atol=1e-5)


def test_a_failed_execution_resumes_from_its_finished_shards(client, build_env) -> None:
    bucket = build_env
    for i in range(24):
        put(client, bucket, f"animals/a{i:02d}.png", encode(random_image(i)))
    handlers = real_handlers()
    calls = 0

    def dies_after_two(payload: dict[str, Any], context: object) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise RuntimeError("Sandbox.Timedout")
        return handlers["EmbedShardFunction"](payload, context)

    failing = Execution(client, bucket, {**handlers, "EmbedShardFunction": dies_after_two})
    with pytest.raises(ExecutionFailed, match="ExceedToleratedFailureThreshold"):
        failing.run(recorded("sfn-execution-input.json"))
    assert read_pointer(IndexLocation(client, bucket, "index/")) is None
    first_two = failing.payloads["EmbedShardFunction"][:2]
    # The Abandon state gave the build lease back: the next execution need not wait for it.
    (abandon,) = failing.payloads["BuildMergeFunction"]
    assert abandon["abandon"] is True
    assert not work_files(client, bucket, "index/work/build-lease.json")

    retry = Execution(client, bucket, handlers)
    summary = retry.run(recorded("sfn-execution-input.json"))
    assert summary["state"] == "published" and summary["count"] == 24
    # The same shards, planned again; the two finished ones are not embedded again.
    assert {p["shard_id"] for p in first_two} <= {
        p["shard_id"] for p in retry.payloads["EmbedShardFunction"]
    }
    assert 0 < summary["resumed"] < 24 and summary["embedded"] == 24 - summary["resumed"]


def test_a_shard_that_keeps_failing_is_left_for_the_next_build(
    client, build_env, monkeypatch
) -> None:
    """Within ShardFailureTolerance the build is published without the failed shard's images,
    listed as skipped; the next execution embeds them."""
    bucket = build_env
    monkeypatch.setenv("IMAGE_SEARCH_SHARD_SIZE", "1")  # one image per shard: 24 shards
    get_settings.cache_clear()
    for i in range(24):
        put(client, bucket, f"nature/n{i:02d}.png", encode(random_image(i)))
    handlers = real_handlers()

    def poisoned(payload: dict[str, Any], context: object) -> dict[str, Any]:
        shard = handlers["EmbedShardFunction"]
        if payload["shard_id"] == first_shard:
            raise RuntimeError("OutOfMemory")
        return shard(payload, context)

    first_shard = ""
    flaky = Execution(client, bucket, {**handlers, "EmbedShardFunction": poisoned})
    plan = handlers["BuildPlanFunction"]

    def plan_and_pick(payload: dict[str, Any], context: object) -> dict[str, Any]:
        nonlocal first_shard
        output = plan(payload, context)
        shards = json.loads(s3.get_bytes(client, bucket=bucket, key=output["items_key"]))
        first_shard = shards[0]["shard_id"]
        return output

    flaky.handlers["BuildPlanFunction"] = plan_and_pick
    summary = flaky.run(recorded("sfn-execution-input.json"))
    assert flaky.failed_children == 1
    assert summary["state"] == "published" and summary["count"] == 23 and summary["skipped"] == 1
    (left_out,) = summary["skipped_examples"]
    assert "did not finish" in left_out["reason"]

    again = Execution(client, bucket, handlers).run(recorded("sfn-execution-input.json"))
    assert again["state"] == "published" and again["count"] == 24 and again["embedded"] == 1


def test_an_execution_while_another_build_holds_the_lease_does_nothing(client, build_env) -> None:
    from image_search.storage import lease

    bucket = build_env
    put(client, bucket, "animals/a.png", encode(random_image(1)))
    other = lease.acquire(
        client, bucket=bucket, key=IndexLocation(client, bucket, "index/").lease_key, seconds=600
    )
    busy = Execution(client, bucket, real_handlers())
    output = busy.run(recorded("sfn-execution-input.json"))
    assert output["plan"]["state"] == "busy"  # not a failure: the other build does the work
    assert "another build is running" in output["plan"]["detail"]
    assert "EmbedShardFunction" not in busy.payloads
    assert read_pointer(IndexLocation(client, bucket, "index/")) is None
    other.release()
    again = Execution(client, bucket, real_handlers()).run(recorded("sfn-execution-input.json"))
    assert again["state"] == "published"


def test_an_empty_bucket_fails_the_execution(client, build_env) -> None:
    """Raising (not returning an error summary) is what makes the execution fail and alarm."""
    from image_search.errors import NoImagesError

    with pytest.raises(NoImagesError):
        Execution(client, build_env, real_handlers()).run(recorded("sfn-execution-input.json"))
    assert not work_files(client, build_env)  # nothing planned, and the lease given back


def test_a_shard_function_loads_the_model_once_per_process(client, build_env) -> None:
    from image_search.model.factory import get_embedder

    for i in range(12):
        put(client, build_env, f"animals/a{i:02d}.png", encode(random_image(i)))
    execution = Execution(client, build_env, real_handlers())
    before = get_embedder.cache_info()
    execution.run(recorded("sfn-execution-input.json"))
    after = get_embedder.cache_info()
    shards = len(execution.payloads["EmbedShardFunction"])
    assert shards > 1 and after.misses <= before.misses + 1
    # Every shard asked the cache (so did the plan and the merge, for the model's identity).
    assert after.hits + after.misses >= before.hits + before.misses + shards
