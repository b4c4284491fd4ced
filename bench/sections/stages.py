"""(8) The build's plan and merge stages at N images: seconds and peak memory.

In a moto S3 server: a published build of 95% of the images (``fixtures.publish``:
clustered 512-d vectors, as ViT-B/32 gives, their ``auto`` index and photo fields). The listing
is synthetic (moto would take ages to hold a million objects): the published images, 1% of them
changed (new ETag), and 5% new ones. The plan reads and checks the previous build, diffs, cuts
the shards and saves the plan; synthetic shard results (vectors and photo fields) then stand in
for the embedding; the merge reads the previous vectors and every shard's, builds the index
(``auto``: ``ivf-sq8`` above 20,000), publishes and deletes the work files. Each stage runs in a
fresh process, whose peak resident memory is its VmHWM.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.children.stage import MODEL, PREFIX, published
from bench.fixtures import data
from bench.fixtures.publish import publish_synthetic, synthetic_fields
from bench.paths import ROOT
from bench.report.stats import Report, Rounds, Row
from image_search.build import work
from image_search.model.vectors import normalise
from image_search.storage import s3

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)


def run(shared: Shared) -> None:
    """In an S3 server of its own: a million images' build is not kept for the later sections."""
    from bench.fixtures.s3server import s3_server

    count = shared.sizes.stage_images
    LOG.info("(8) build stages: %d images", count)
    with s3_server():
        _measure(shared.report, count=count)


def _measure(report: Report, *, count: int) -> None:
    client = s3.make_client()
    bucket = publish_synthetic(
        client, count=published(count), model=MODEL, name="stages", photos=True
    ).bucket
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


def _stage(stage: str, *, bucket: str, count: int, plan_id: str = "-") -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.children.stage", stage, bucket, str(count), plan_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{stage} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    LOG.info("%s at %d images: %s", stage, count, result)
    return result


def _fake_shard_results(client: s3.S3Client, *, bucket: str, plan_id: object) -> int:
    """What the shards would have saved: a result and random unit vectors for each."""
    from image_search.artefacts.location import IndexLocation

    where = IndexLocation(client, bucket, PREFIX)
    plan = work.load_plan(where, plan_id=str(plan_id))
    rng = np.random.default_rng(3)

    def save(ref: work.ShardRef) -> None:
        shard = work.load_shard(where, shard_id=ref.shard_id)
        vectors = normalise(rng.standard_normal((len(shard.objects), data.DIM)))
        result = work.ShardResult(
            shard_id=ref.shard_id,
            model=MODEL,
            plan_id=plan.plan_id,
            vectors_key="",
            rows=work.Rows.of(shard.objects),
            fields=work.FieldRows.of([synthetic_fields(at) for at in range(len(shard.objects))]),
        )
        work.save_result(where, result=result, vectors=vectors)

    work.in_parallel(save, plan.shards)
    return len(plan.shards)
