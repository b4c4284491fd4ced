"""The search function's init phase (importing ``image_search.handlers.api``) in a fresh
interpreter, as Lambda runs it: the text tower and the index begin loading before the web
framework is imported, and the phase ends with both ready (issue 23: the cold start overlaps
ONNX Runtime's session and the index's download with FastAPI's import)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.model.onnx_clip import OnnxEmbedder
from tests.support.buckets import put
from tests.support.factories import encode, random_image

ROOT = Path(__file__).resolve().parents[2]

# Notes the threads alive when FastAPI is first imported, runs the init phase, then reports.
INIT = """
import importlib.abc, json, sys, threading
from pathlib import Path

seen = {}

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "fastapi" and "fastapi" not in seen:
            seen["fastapi"] = sorted(thread.name for thread in threading.enumerate())
        return None

sys.meta_path.insert(0, Watch())
import handler

handler.search  # the init phase: image_search.handlers.api imported
from image_search.serve.service import get_service

service = get_service()
loaded = service.index.loaded
image_ready = service.embedder.image_ready
# Loaded by the init phase, the text tower no longer needs its file.
for path in Path(sys.argv[1]).glob("text.onnx*"):
    path.unlink()
hits = service.search_text("a cat", k=3).hits
print(json.dumps({
    "threads_at_fastapi_import": seen["fastapi"],
    "images_served": len(loaded.metadata.items) if loaded else 0,
    "text_hits": len(hits),
    "image_ready_after_init": image_ready,
}))
"""


def test_the_index_and_text_tower_load_while_fastapi_is_imported(
    bucket, client, onnx: OnnxEmbedder, exported: Path, tmp_path: Path
) -> None:
    for seed in range(3):
        put(client, bucket, f"animals/{seed}.png", encode(random_image(seed)))
    assert run_build(get_settings(), client=client, embedder=onnx).published
    served = Path(shutil.copytree(exported, tmp_path / "export"))
    env = {**os.environ, "IMAGE_SEARCH_MODEL": str(served), "PYTHONPATH": str(ROOT)}

    done = subprocess.run(
        [sys.executable, "-c", INIT, str(served)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    init = json.loads(done.stdout.strip().splitlines()[-1])
    assert "image-search-warm" in init["threads_at_fastapi_import"]
    # The phase ends with the index and the text tower loaded (the search above ran without the
    # text model's file); the image tower waits for the first text answer.
    assert init["images_served"] == 3 and init["text_hits"] == 3
    assert not init["image_ready_after_init"]
