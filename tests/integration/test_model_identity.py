"""A model's identity across runtimes: a build by one is served and continued by the other; the
export command, locally and to S3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.build.pipeline import run_build
from image_search.cli import main
from image_search.config import get_settings
from image_search.model.factory import choose_runtime
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.torch_clip import ClipEmbedder
from tests.support.buckets import put
from tests.support.factories import encode, random_image, save_tiny_clip
from tests.support.service import make_api


def runtime(source: Path | str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return choose_runtime(str(source), runtime="auto", device="auto", cache_dir=tmp_path)


# ---- identity: a build by one runtime is served and continued by the other --------------------


def photos(client, bucket: str, count: int) -> None:  # type: ignore[no-untyped-def]
    for seed in range(count):
        put(client, bucket, f"animals/{seed}.png", encode(random_image(seed)))


def test_a_torch_build_is_served_by_the_export(
    bucket, client, embedder, exported: Path, tiny_model: Path, monkeypatch
) -> None:
    photos(client, bucket, 3)
    report = run_build(get_settings(), client=client, embedder=embedder)
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None and report.published
    metadata, _ = load_vectors(IndexLocation(client, bucket, "index/"), pointer=pointer)
    assert metadata.model == str(tiny_model)

    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(exported))
    api = make_api()
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["model"] == str(tiny_model)
    hits = api.post("/image_search/search", json={"query": "a cat", "k": 3}).json()
    torch_hits = _torch_ranking(embedder, client, bucket, "a cat")
    assert [hit["key"] for hit in hits] == torch_hits


def test_an_export_build_is_continued_by_torch_without_re_embedding(
    bucket, client, embedder, onnx: OnnxEmbedder, tiny_model: Path
) -> None:
    photos(client, bucket, 3)
    first = run_build(get_settings(), client=client, embedder=onnx)
    assert first.published and first.embedded == 3
    again = run_build(get_settings(), client=client, embedder=embedder)
    assert again.embedded == 0 and not again.published  # unchanged: same model, same objects
    put(client, bucket, "animals/new.png", encode(random_image(99)))
    third = run_build(get_settings(), client=client, embedder=embedder)
    assert third.embedded == 1 and third.reused == 3


def test_an_export_of_another_model_is_refused(
    bucket, client, embedder, tmp_path: Path, monkeypatch
) -> None:
    photos(client, bucket, 1)
    run_build(get_settings(), client=client, embedder=embedder)
    other = save_tiny_clip(tmp_path / "other", seed=3)
    assert main(["export", "--model", str(other), "--output", str(tmp_path / "other-onnx")]) == 0
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(tmp_path / "other-onnx"))
    response = make_api().get("/health")
    assert response.status_code == 503 and str(other) in response.json()["detail"]


def _torch_ranking(embedder: ClipEmbedder, client, bucket: str, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    from image_search.model.images import decode

    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    keys = [key for key in keys if key.startswith("animals/")]
    pictures = [
        decode(client.get_object(Bucket=bucket, Key=key)["Body"].read(), max_pixels=10**7)
        for key in keys
    ]
    scores = embedder.embed_images(pictures) @ embedder.embed_texts([query])[0]
    return [keys[row] for row in np.argsort(-scores)]


# ---- the command line and S3 -------------------------------------------------------------------


def test_export_command_reports_success_and_failure(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--model", str(tiny_model), "--output", str(tmp_path / "out")]) == 0
    assert f"IMAGE_SEARCH_MODEL={tmp_path / 'out'}" in capsys.readouterr().out
    assert main(["export", "--model", str(tmp_path / "missing"), "--output", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot load model")


def test_export_to_s3_is_served_from_s3(
    tiny_model: Path, bucket: str, client, onnx: OnnxEmbedder, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/models/tiny-onnx"
    assert main(["export", "--model", str(tiny_model), "--output", url]) == 0
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "models/tiny-onnx/export.json" in keys and "models/tiny-onnx/text.onnx" in keys
    cache = tmp_path / "cache"
    assert runtime(url, cache) == "onnx"
    from_s3 = OnnxEmbedder(source=url, cache_dir=cache)
    assert from_s3.identity == str(tiny_model)
    np.testing.assert_array_equal(from_s3.embed_texts(["cat"]), onnx.embed_texts(["cat"]))
    client.delete_object(Bucket=bucket, Key="models/tiny-onnx/export.json")
    # Downloaded once: a second process start reads the local copy, not S3.
    assert OnnxEmbedder(source=url, cache_dir=cache).identity == str(tiny_model)
