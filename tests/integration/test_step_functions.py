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
from tests.support.factories import LambdaContext, encode, random_image, sample_bucket_layout
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

    # What each function was sent has the recorded shape: the execution's id (the lease's owner)
    # with the schedule's event, one item per shard from the ItemSelector, the plan's id and the
    # execution's id for the merge.
    (plan,) = execution.payloads["BuildPlanFunction"]
    assert plan == {
        "execution": execution.execution_id,
        "input": recorded("sfn-execution-input.json"),
    }
    assert_same_shape(recorded("sfn-plan.json"), plan)
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
    # The photo fields, carried from the shard functions to the merge in their results.
    assert [i.photo for i in on_lambda.items] == [i.photo for i in here.items]
    assert all(i.photo is not None for i in on_lambda.items)
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
    # The Plan state's Catch gives the lease back, then the execution fails with the error.
    with pytest.raises(ExecutionFailed, match="NoImagesError"):
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


# ---- the lease, whatever state dies ----------------------------------------------------------


LEASE = "index/work/build-lease.json"


def populated(client: s3.S3Client, bucket: str, count: int = 8) -> None:
    for i in range(count):
        put(client, bucket, f"animals/a{i:02d}.png", encode(random_image(i)))


def test_a_merge_killed_after_renewing_the_lease_leaves_the_next_execution_free(
    client, build_env
) -> None:
    """The merge renews the lease before publishing, which moves its ETag off the one the plan
    saved; killed then (timeout, out of memory), it never releases. Abandon gives the lease back
    by owner, so the next execution builds instead of answering "busy" for hours."""
    from image_search.build import step_functions, work

    bucket = build_env
    populated(client, bucket)
    handlers = real_handlers()
    merge = handlers["BuildMergeFunction"]

    def killed_after_renewing(payload: dict[str, Any], context: object) -> dict[str, Any]:
        if payload.get("abandon"):
            return merge(payload, context)
        where = IndexLocation(client, bucket, "index/")
        held = step_functions._lease(where, work.load_plan(where, plan_id=payload["plan_id"]))
        assert held is not None
        held.ensure_held()  # what merge_build does before it publishes
        raise RuntimeError("Sandbox.Timedout")  # killed: no finally runs, nothing is released

    dying = Execution(client, bucket, {**handlers, "BuildMergeFunction": killed_after_renewing})
    with pytest.raises(ExecutionFailed, match="Sandbox.Timedout"):
        dying.run(recorded("sfn-execution-input.json"))
    abandon = dying.payloads["BuildMergeFunction"][-1]
    assert abandon == {"execution": dying.execution_id, "abandon": True}
    assert_same_shape(recorded("sfn-abandon.json"), abandon)
    assert work_files(client, bucket, LEASE) == []

    again = Execution(client, bucket, handlers).run(recorded("sfn-execution-input.json"))
    assert again["state"] == "published" and again["count"] == 8


def test_a_plan_deleted_mid_build_still_gives_the_lease_back(client, build_env) -> None:
    bucket = build_env
    populated(client, bucket)
    handlers = real_handlers()
    merge = handlers["BuildMergeFunction"]

    def plan_gone(payload: dict[str, Any], context: object) -> dict[str, Any]:
        if not payload.get("abandon"):
            where = IndexLocation(client, bucket, "index/")
            client.delete_object(Bucket=bucket, Key=where.plan_key(payload["plan_id"]))
        return merge(payload, context)

    broken = Execution(client, bucket, {**handlers, "BuildMergeFunction": plan_gone})
    with pytest.raises(ExecutionFailed):
        broken.run(recorded("sfn-execution-input.json"))
    assert work_files(client, bucket, LEASE) == []
    again = Execution(client, bucket, handlers).run(recorded("sfn-execution-input.json"))
    assert again["state"] == "published"


def test_a_plan_killed_after_taking_the_lease_gives_it_back(client, build_env) -> None:
    """The Plan state has a Catch too: a plan killed between taking the lease and answering
    (no code of ours runs after that) leaves no lease behind."""
    from image_search.storage import lease

    bucket = build_env
    populated(client, bucket)
    handlers = real_handlers()

    def killed_after_acquiring(payload: dict[str, Any], context: object) -> dict[str, Any]:
        lease.acquire(client, bucket=bucket, key=LEASE, seconds=600, owner=payload["execution"])
        raise RuntimeError("Sandbox.Timedout")

    dying = Execution(client, bucket, {**handlers, "BuildPlanFunction": killed_after_acquiring})
    with pytest.raises(ExecutionFailed, match="Sandbox.Timedout"):
        dying.run(recorded("sfn-execution-input.json"))
    assert dying.payloads["BuildMergeFunction"] == [
        {"execution": dying.execution_id, "abandon": True}
    ]
    assert work_files(client, bucket, LEASE) == []
    again = Execution(client, bucket, handlers).run(recorded("sfn-execution-input.json"))
    assert again["state"] == "published"


def test_abandon_never_releases_another_execution_s_lease(client, build_env) -> None:
    from image_search.storage import lease

    bucket = build_env
    other = lease.acquire(client, bucket=bucket, key=LEASE, seconds=600, owner="execution-b")
    merge = real_handlers()["BuildMergeFunction"]
    answer = merge({"execution": "execution-a", "abandon": True}, LambdaContext())
    assert answer["state"] == "abandoned" and answer["lease_released"] is False
    assert work_files(client, bucket, LEASE) == [LEASE]
    other.release()
    assert work_files(client, bucket, LEASE) == []


def test_a_result_poisoned_before_the_merge_leaves_only_its_images_out_until_the_next_execution(
    client, build_env
) -> None:
    """The merge Lambda has no model: it refuses the shard (its images skipped, the result
    deleted) and the next execution embeds them."""
    from tests.integration.test_build_trust import a_nan_row, read_result

    bucket = build_env
    for i in range(12):
        put(client, bucket, f"animals/a{i:02d}.png", encode(random_image(i)))
    handlers = real_handlers()
    poisoned: list[str] = []

    def poison_then_merge(payload: dict[str, Any], context: object) -> dict[str, Any]:
        listed = work_files(client, bucket, "index/work/build/shards/")
        victim = sorted(key.split("/")[-2] for key in listed if key.endswith("/result.json"))[0]
        a_nan_row(client, bucket, read_result(client, bucket, victim))
        poisoned.append(victim)
        return handlers["BuildMergeFunction"](payload, context)

    first = Execution(client, bucket, {**handlers, "BuildMergeFunction": poison_then_merge})
    summary = first.run(recorded("sfn-execution-input.json"))
    assert summary["state"] == "published" and 0 < summary["skipped"] < 12
    assert summary["count"] + summary["skipped"] == 12
    assert all("result was refused" in s["reason"] for s in summary["skipped_examples"])
    metadata, vectors = published(client, bucket)
    assert np.isfinite(vectors).all() and len(metadata.items) == summary["count"]

    again = Execution(client, bucket, handlers).run(recorded("sfn-execution-input.json"))
    assert again["state"] == "published" and again["count"] == 12
    assert again["embedded"] == summary["skipped"]
