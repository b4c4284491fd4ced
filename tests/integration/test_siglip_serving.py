"""A SigLIP export runs the product end to end: the build embeds a bucket with it, the API
serves its text and image searches, ranked as brute force over the same export ranks them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.model.export import export
from image_search.model.images import decode
from image_search.model.onnx_clip import OnnxEmbedder
from tests.support.buckets import put
from tests.support.factories import encode, random_image
from tests.support.service import make_api
from tests.support.siglip import save_tiny_siglip


@pytest.fixture(scope="module")
def siglip_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("siglip-serving")
    model = save_tiny_siglip(root / "model", seed=5)
    export(str(model), str(root / "export"), cache_dir=root / "cache", precision="int8")
    return root / "export"


def test_build_and_search_with_a_siglip_int8_export(
    bucket, client, siglip_export: Path, tmp_path: Path, monkeypatch
) -> None:
    keys = [f"animals/{seed}.png" for seed in range(5)]
    for seed, key in enumerate(keys):
        put(client, bucket, key, encode(random_image(seed)))
    embedder = OnnxEmbedder(source=str(siglip_export), cache_dir=tmp_path)
    report = run_build(get_settings(), client=client, embedder=embedder)
    assert report.published and report.embedded == 5

    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(siglip_export))
    api = make_api()
    health = api.get("/health").json()
    assert health["model"] == embedder.identity and health["precision"] == "int8"

    stored = [client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]
    pictures = [decode(data, max_pixels=10**7) for data in stored]
    vectors = embedder.embed_images(pictures)
    query = embedder.embed_texts(["a photo of a dog"])[0]
    expected = [keys[row] for row in np.argsort(-(vectors @ query), kind="stable")[:3]]
    hits = api.post("/image_search/search", json={"query": "a photo of a dog", "k": 3}).json()
    assert [hit["key"] for hit in hits] == expected

    upload = {"file": ("q.png", encode(random_image(2)), "image/png")}
    found = api.post("/image_search/search_by_image?k=1", files=upload).json()
    assert found[0]["key"] == "animals/2.png"
