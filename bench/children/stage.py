"""Run in a fresh process by ``bench.sections.stages``: one build stage, timed, with its peak
memory.

``python -m bench.children.stage plan|merge BUCKET COUNT PLAN_ID`` prints one JSON object: what
the stage did, its seconds and its peak resident bytes. The plan gets a synthetic listing of
COUNT images (the published ones, 1% of them with a new ETag, and 5% new ones); the merge reads
the plan PLAN_ID and the shard results its parent saved.
"""

from __future__ import annotations

import json
import sys
import time

from bench.fixtures.publish import FOLDERS
from bench.fixtures.publish import INDEX_PREFIX as PREFIX
from bench.report.memory import peak_rss_bytes
from image_search.build import work
from image_search.storage import s3

MODEL = "bench/clip-vit-b32"
CHANGED_EVERY = 100  # 1% of the published images have a new ETag
NEW_SHARE = 0.05


def published(count: int) -> int:
    """How many of ``count`` images the previous build holds."""
    return count - int(count * NEW_SHARE)


def child(stage: str, *, bucket: str, count: int, plan_id: str) -> dict[str, object]:
    from image_search.artefacts.location import IndexLocation
    from image_search.build.merge_stage import merge_build
    from image_search.build.options import BuildOptions
    from image_search.build.plan_stage import plan_listing
    from image_search.config import Settings

    options = BuildOptions.of(Settings(bucket=bucket, model=MODEL, index_prefix=PREFIX))
    client = s3.make_client(max_connections=work.PARALLEL_REQUESTS)
    where = IndexLocation(client, bucket, PREFIX)
    if stage == "plan":
        planned = plan_listing(where, options, _listing(count), model=MODEL)
        return {
            "plan_id": planned.plan.plan_id,
            "todo": sum(len(shard.objects) for shard in planned.shards),
            "reused": len(planned.plan.reused),
        }
    plan = work.load_plan(where, plan_id=plan_id)
    report = merge_build(where, options, plan)
    assert report.published and report.count == count, report.line()
    return {"index_type": report.index_type}


def _key(row: int) -> str:
    """The key ``publish_synthetic`` gives row ``row``."""
    return f"{FOLDERS[row % len(FOLDERS)]}/img-{row:07d}.jpg"


def _listing(count: int) -> list[s3.S3Object]:
    old = published(count)
    objects = [
        s3.S3Object(
            _key(row),
            s3.folder_of(_key(row)),
            f"{row + (count if row < old and row % CHANGED_EVERY == 0 else 0):032x}",
            60_000,
        )
        for row in range(count)
    ]
    return sorted(objects, key=lambda obj: (obj.folder, obj.key))


def main(stage: str, bucket: str, count: str, plan_id: str) -> None:
    started = time.perf_counter()
    result = child(stage, bucket=bucket, count=int(count), plan_id=plan_id)
    result["seconds"] = time.perf_counter() - started
    # VmHWM, not getrusage's ru_maxrss: Linux carries that over from the parent across exec, and
    # the parent has held the published build.
    result["peak_bytes"] = peak_rss_bytes()
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:5])
