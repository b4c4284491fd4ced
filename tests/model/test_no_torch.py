"""The Lambda image has no torch: build and serve in a process where importing it fails.

A ``sitecustomize`` on PYTHONPATH puts a finder first on ``sys.meta_path`` that refuses torch
and transformers (as if not installed) and records every attempt, so an import slipped back
into the serving or build path fails here even when something catches the ImportError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.buckets import put
from tests.support.factories import encode, random_image

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"

# What an export must serve without: the export's libraries (open_clip's included, in the export
# environment where they are installed).
BLOCKED = {"torch", "transformers", "open_clip", "timm", "torchvision"}
BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {BLOCKED}
ATTEMPTS = []


class NoTorch(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            ATTEMPTS.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, NoTorch())
"""

# The Lambda entry points in one process: the build's state machine (plan → one embed_shard per
# shard → merge, replayed by tests/support/state_machine.py through handler.py), then
# handler.search with API Gateway events (a text search and an image upload, so both towers
# and the preprocessing run).
CHILD = """
import json, sys
from pathlib import Path

import sitecustomize
from image_search.storage import s3
from tests.support.state_machine import Execution, LambdaContext, real_handlers

events = Path(sys.argv[1])
execution = Execution(s3.make_client(), sys.argv[2], real_handlers())
summary = execution.run(json.loads((events / "sfn-execution-input.json").read_text()))
import handler

responses = {
    name: handler.search(json.loads((events / name).read_text()), LambdaContext())
    for name in ("http-search.json", "http-upload.json")
}
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in sitecustomize.BLOCKED)
print(json.dumps({"build": summary, "shards": len(execution.payloads["EmbedShardFunction"]),
                  "responses": responses, "attempts": sitecustomize.ATTEMPTS, "loaded": loaded}))
"""


def test_build_and_search_run_without_torch(
    bucket: str, client, exported: Path, tmp_path: Path
) -> None:
    _run_lambda(bucket, client, exported, tmp_path)


@pytest.mark.open_clip
def test_an_open_clip_export_runs_without_torch_or_open_clip(
    bucket: str, client, open_clip_export: Path, tmp_path: Path
) -> None:
    """What the Lambda image has is enough for an open_clip export too (ftfy included)."""
    _run_lambda(bucket, client, open_clip_export, tmp_path)


def _run_lambda(bucket: str, client, export: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for seed in range(3):
        put(client, bucket, f"nature/{seed}.png", encode(random_image(seed)))
        put(client, bucket, f"animals/{seed}.png", encode(random_image(10 + seed)))
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.replace("{BLOCKED}", repr(BLOCKED)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "IMAGE_SEARCH_MODEL": str(export),
        "IMAGE_SEARCH_SHARD_SIZE": "4",  # two shards, so the Map runs more than once
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(EVENTS), bucket],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [] and result["loaded"] == []
    assert result["shards"] == 2
    build = result["build"]
    assert build["state"] == "published" and build["count"] == 6, build
    for name, response in result["responses"].items():
        assert response["statusCode"] == 200, (name, response["body"][:500])
        assert len(json.loads(response["body"])) == 3, name
    # The blocker works: the same process fails on torch's own path.
    check = subprocess.run(
        [sys.executable, "-c", "import transformers"], env=env, capture_output=True, text=True
    )
    assert check.returncode != 0 and "blocked by the test" in check.stderr
