"""A cold start answers text before the image tower is loaded; uploads wait for it, or get a 503
they can retry. The tiny CLIP's ONNX export on a moto bucket, the image tower held back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.model.factory import get_embedder
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.serve import image_tower
from image_search.serve.service import get_service
from tests.support.buckets import put
from tests.support.factories import encode, random_image
from tests.support.service import make_api

began = threading.Event()  # an image tower's load has begun (under hold_back)


@pytest.fixture
def hold_back(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], threading.Event]]:
    """Call it to make every image tower's load wait until the returned event is set (it is at
    teardown, whatever happened); each test starts with fresh embedders."""
    release = threading.Event()
    opening = OnnxEmbedder._vision_tower

    def slow(self):  # type: ignore[no-untyped-def]
        began.set()
        release.wait(30)
        return opening(self)

    def hold() -> threading.Event:
        monkeypatch.setattr(OnnxEmbedder, "_vision_tower", slow)
        monkeypatch.setattr(image_tower, "WAIT_SECONDS", 0.2)
        return release

    get_embedder.cache_clear()
    began.clear()
    yield hold
    release.set()
    get_embedder.cache_clear()


def test_text_answers_while_the_image_tower_loads(
    bucket, client, onnx: OnnxEmbedder, exported: Path, monkeypatch, hold_back
) -> None:
    for seed in range(3):
        put(client, bucket, f"animals/{seed}.png", encode(random_image(seed)))
    assert run_build(get_settings(), client=client, embedder=onnx).published
    held_back = hold_back()
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(exported))
    api = make_api()
    get_service().warm()  # what Lambda's init phase and `serve` run: returns with text ready

    health = api.get("/health")
    assert health.status_code == 200
    served = {name: health.json()[name] for name in ("runtime", "precision", "image_tower")}
    assert served == {"runtime": "onnx", "precision": "fp32", "image_tower": "loading"}
    text = api.post("/image_search/search", json={"query": "a cat", "k": 3})
    assert text.status_code == 200 and len(text.json()) == 3

    upload = {"file": ("cat.png", encode(random_image(7)), "image/png")}
    waiting = api.post("/image_search/search_by_image", files=upload)
    assert waiting.status_code == 503 and waiting.headers["Retry-After"]
    assert "still loading" in waiting.json()["detail"]

    held_back.set()
    deadline = time.monotonic() + 30
    while api.get("/health").json()["image_tower"] == "loading":
        assert time.monotonic() < deadline, "the image tower never finished loading"
        time.sleep(0.02)
    answered = api.post("/image_search/search_by_image", files=upload)
    assert answered.status_code == 200 and len(answered.json()) == 3


def test_the_image_tower_loads_after_the_first_text_answer(
    bucket, client, onnx: OnnxEmbedder, exported: Path, monkeypatch, hold_back
) -> None:
    """Opening it as the port opened took a core from the first text answer (issue 23)."""
    put(client, bucket, "animals/0.png", encode(random_image(0)))
    assert run_build(get_settings(), client=client, embedder=onnx).published
    held_back = hold_back()
    monkeypatch.setattr(image_tower, "DELAY_SECONDS", 60.0)
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(exported))
    api = make_api()
    get_service().warm()

    assert api.get("/health").json()["image_tower"] == "loading"
    assert not began.wait(0.3), "the image tower began loading before any text answer"
    assert api.post("/image_search/search", json={"query": "a cat", "k": 1}).status_code == 200
    assert began.wait(10), "the first text answer did not start the image tower"
    held_back.set()
