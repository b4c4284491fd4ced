"""(8) The build's plan and merge stages at N images: seconds and peak memory.

In the moto S3 server: a published build of 95% of the images (``serving.publish_synthetic``:
clustered 512-d vectors, as ViT-B/32 gives, and their ``auto`` index). The listing is synthetic
(moto would take ages to hold a million objects): the published images, 1% of them changed (new
ETag), and 5% new ones. The plan reads and checks the previous build, diffs, cuts the shards and
saves the plan; synthetic shard results then stand in for the embedding; the merge reads the
previous vectors and every shard's, builds the index (``auto``: ``ivf-sq8`` above 20,000),
publishes and deletes the work files. Each stage runs in a fresh process, whose peak resident
memory is its ``ru_maxrss``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import data
from bench.serving import FOLDERS, publish_synthetic
from bench.serving import INDEX_PREFIX as PREFIX
from bench.stats import Report, Rounds, Row
from image_search.build import work
from image_search.model.vectors import normalise
from image_search.storage import s3

LOG = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
MODEL = "bench/clip-vit-b32"
CHANGED_EVERY = 100  # 1% of the published images have a new ETag
NEW_SHARE = 0.05

CHILD = """
import json, resource, sys, time
from bench.stages import child
started = time.perf_counter()
result = child(sys.argv[1], bucket=sys.argv[2], count=int(sys.argv[3]), plan_id=sys.argv[4])
result["seconds"] = time.perf_counter() - started
result["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(result))
"""


def run(report: Report, *, count: int) -> None:
    client = s3.make_client()
    bucket = publish_synthetic(client, count=_published(count), model=MODEL, name="stages").bucket
    plan = _stage("plan", bucket=bucket, count=count)
    shards = _fake_shard_results(client, bucket=bucket, plan_id=plan["plan_id"])
    merge = _stage("merge", bucket=bucket, count=count, plan_id=plan["plan_id"])
    group = f"build stages, {count // 1000}k images"
    note = f"{plan['todo']} to embed in {shards} shards, {plan['reused']} reused"
    report.add(
        Row.of(group, "plan (diff, shards, save)", Rounds([plan["seconds"]]), "s", note=note)
    )
    report.add(Row.of(group, "plan peak memory", Rounds([plan["peak_bytes"] / 2**20]), "MiB"))
    report.add(
        Row.of(
            group,
            "merge (vectors, index, publish)",
            Rounds([merge["seconds"]]),
            "s",
            note=f"index {merge['index_type']}",
        )
    )
    report.add(Row.of(group, "merge peak memory", Rounds([merge["peak_bytes"] / 2**20]), "MiB"))


def child(stage: str, *, bucket: str, count: int, plan_id: str) -> dict[str, object]:
    """One stage, run by ``CHILD`` in its own process."""
    from image_search.build.merge_stage import merge_build
    from image_search.build.plan_stage import plan_listing
    from image_search.config import Settings

    settings = Settings(bucket=bucket, model=MODEL, index_prefix=PREFIX)
    client = s3.make_client(max_connections=work.PARALLEL_REQUESTS)
    if stage == "plan":
        planned = plan_listing(settings, _listing(count), client=client, model=MODEL)
        return {
            "plan_id": planned.plan.plan_id,
            "todo": sum(len(shard.objects) for shard in planned.shards),
            "reused": len(planned.plan.reused),
        }
    plan = work.load_plan(client, bucket=bucket, index_prefix=PREFIX, plan_id=plan_id)
    report = merge_build(settings, plan, client=client)
    assert report.published and report.count == count, report.line()
    return {"index_type": report.index_type}


def _stage(stage: str, *, bucket: str, count: int, plan_id: str = "-") -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, stage, bucket, str(count), plan_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{stage} failed: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    LOG.info("%s at %d images: %s", stage, count, result)
    return result


def _published(count: int) -> int:
    return count - int(count * NEW_SHARE)


def _key(row: int) -> str:
    """The key ``publish_synthetic`` gives row ``row``."""
    return f"{FOLDERS[row % len(FOLDERS)]}/img-{row:07d}.jpg"


def _listing(count: int) -> list[s3.S3Object]:
    published = _published(count)
    objects = [
        s3.S3Object(
            _key(row),
            s3.folder_of(_key(row)),
            f"{row + (count if row < published and row % CHANGED_EVERY == 0 else 0):032x}",
            60_000,
        )
        for row in range(count)
    ]
    return sorted(objects, key=lambda obj: (obj.folder, obj.key))


def _fake_shard_results(client: s3.S3Client, *, bucket: str, plan_id: object) -> int:
    """What the shards would have saved: a result and random unit vectors for each."""
    plan = work.load_plan(client, bucket=bucket, index_prefix=PREFIX, plan_id=str(plan_id))
    rng = np.random.default_rng(3)

    def save(ref: work.ShardRef) -> None:
        shard = work.load_shard(client, bucket=bucket, index_prefix=PREFIX, shard_id=ref.shard_id)
        vectors = normalise(rng.standard_normal((len(shard.objects), data.DIM)))
        result = work.ShardResult(
            shard_id=ref.shard_id,
            model=MODEL,
            plan_id=plan.plan_id,
            vectors_key="",
            rows=work.Rows.of(shard.objects),
        )
        work.save_result(client, bucket=bucket, index_prefix=PREFIX, result=result, vectors=vectors)

    work.in_parallel(save, plan.shards)
    return len(plan.shards)
