"""An open_clip export runs the product end to end: the build embeds a bucket with it, the API
serves text and image searches ranked as brute force over the same export ranks them, and an
index built by another model is refused (and the other way round)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.model.images import decode
from image_search.model.onnx_clip import OnnxEmbedder
from tests.support.buckets import put
from tests.support.factories import encode, random_image
from tests.support.service import make_api

pytestmark = pytest.mark.open_clip
# Skips this module where open_clip is absent (the default venv): `make test-open-clip` runs it.
support = pytest.importorskip("tests.support.open_clip")


def _photos(client, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    keys = [f"animals/{seed}.png" for seed in range(5)]
    for seed, key in enumerate(keys):
        put(client, bucket, key, encode(random_image(seed, size=(300, 200))))
    return keys


def test_build_and_search_with_an_open_clip_export(
    bucket, client, open_clip_export: Path, tmp_path: Path, monkeypatch
) -> None:
    keys = _photos(client, bucket)
    embedder = OnnxEmbedder(source=str(open_clip_export), cache_dir=tmp_path)
    report = run_build(get_settings(), client=client, embedder=embedder)
    assert report.published and report.embedded == 5

    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(open_clip_export))
    api = make_api()
    health = api.get("/health").json()
    assert health["model"] == embedder.identity and health["model"].startswith("open_clip:")

    stored = [client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]
    vectors = embedder.embed_images([decode(data, max_pixels=10**7) for data in stored])
    query = embedder.embed_texts(["a photo of a dog"])[0]
    expected = [keys[row] for row in np.argsort(-(vectors @ query), kind="stable")[:3]]
    hits = api.post("/image_search/search", json={"query": "a photo of a dog", "k": 3}).json()
    assert [hit["key"] for hit in hits] == expected

    upload = {"file": ("q.png", encode(random_image(2, size=(300, 200))), "image/png")}
    found = api.post("/image_search/search_by_image?k=1", files=upload).json()
    assert found[0]["key"] == "animals/2.png"


def test_an_index_of_another_model_is_refused_both_ways(
    bucket,
    client,
    onnx: OnnxEmbedder,
    open_clip_export: Path,
    exported: Path,
    tmp_path: Path,
    monkeypatch,
) -> None:
    _photos(client, bucket)
    assert run_build(get_settings(), client=client, embedder=onnx).published
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(open_clip_export))
    refused = make_api().get("/health")
    assert refused.status_code == 503 and "open_clip:" in refused.json()["detail"]

    # The open_clip export re-embeds everything into its own index; the CLIP export refuses it.
    again = run_build(
        get_settings(),
        client=client,
        embedder=OnnxEmbedder(source=str(open_clip_export), cache_dir=tmp_path),
    )
    assert again.published and again.embedded == 5 and again.reused == 0
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(exported))
    assert make_api().get("/health").status_code == 503
