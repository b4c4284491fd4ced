"""int8 end to end: the gate on images in a bucket (moto over HTTP), and precision as part of a
build's model, so fp32 and int8 vectors never share an index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from image_search.build.pipeline import run_build
from image_search.cli import main
from image_search.config import get_settings
from image_search.model.images import decode
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.model.onnx_manifest import MANIFEST
from tests.support.buckets import put
from tests.support.factories import encode, random_image
from tests.support.overlap import top10_overlap
from tests.support.service import make_api

FOLDERS = ["cats", "dogs", "beach_2019", "city-night"]


def photos(client, bucket: str, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    keys = [f"{FOLDERS[seed % len(FOLDERS)]}/{seed}.png" for seed in range(count)]
    for seed, key in enumerate(keys):
        put(client, bucket, key, encode(random_image(seed)))
    return sorted(keys)


def get(client, bucket: str, key: str) -> bytes:  # type: ignore[no-untyped-def]
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def export_int8(tiny_model: Path, output: Path, *options: str) -> int:
    args = ["export", "--model", str(tiny_model), "--quantize", "int8", "--output", str(output)]
    return main([*args, *options])


def test_the_gate_prints_the_overlap_it_measured_on_the_bucket(
    bucket, client, tiny_model: Path, onnx: OnnxEmbedder, tmp_path: Path, capsys
) -> None:
    keys = photos(client, bucket, 24)
    out = tmp_path / "int8"
    assert export_int8(tiny_model, out, "--check", f"s3://{bucket}/", "--sample", "100") == 0
    printed = capsys.readouterr().out

    # The oracle: every image (the sample is all 24), both exports, brute-force rankings.
    pictures = [decode(client.get_object(Bucket=bucket, Key=k)["Body"].read(), max_pixels=10**7)
                for k in keys]  # fmt: skip
    prompts = [
        "a photo of beach 2019",
        "a photo of cats",
        "a photo of city night",
        "a photo of dogs",
    ]
    int8 = OnnxEmbedder(source=str(out), cache_dir=tmp_path)
    fp32_images, int8_images = onnx.embed_images(pictures), int8.embed_images(pictures)
    image = top10_overlap(fp32_images, fp32_images, int8_images, int8_images, exclude_self=True)
    fp32_texts, int8_texts = onnx.embed_texts(prompts), int8.embed_texts(prompts)
    text = top10_overlap(fp32_texts, fp32_images, int8_texts, int8_images, exclude_self=False)
    assert f"overlap@10 image={image:.2f} text={text:.2f} on 24 images: passed" in printed
    check = json.loads((out / MANIFEST).read_text())["check"]
    assert check["image"] == pytest.approx(image, abs=1e-4) and check["sample"] == 24
    assert check["text"] == pytest.approx(text, abs=1e-4) and check["prompts"] == 4
    assert check["passed"] and check["threshold"] == 0.9


def test_below_the_threshold_nothing_is_written_unless_forced(
    bucket, client, tiny_model: Path, tmp_path: Path, capsys
) -> None:
    photos(client, bucket, 24)
    measured = tmp_path / "measured"
    assert export_int8(tiny_model, measured, "--check", f"s3://{bucket}/") == 0
    check = json.loads((measured / MANIFEST).read_text())["check"]
    assert check["image"] < 1.0  # noise images: int8 moves some neighbours (measured 0.9-ish)
    above = f"{check['image'] + 0.001:.4f}"
    capsys.readouterr()

    refused = tmp_path / "refused"
    gate = ["--check", f"s3://{bucket}/", "--min-overlap", above]
    assert export_int8(tiny_model, refused, *gate) == 2
    error = capsys.readouterr().err
    assert "overlap@10 image=" in error and "--force" in error and not refused.exists()

    assert export_int8(tiny_model, refused, *gate, "--force") == 0
    assert "FAILED" in capsys.readouterr().out
    assert json.loads((refused / MANIFEST).read_text())["check"]["passed"] is False


def test_a_check_needs_int8_and_enough_images(bucket, client, tiny_model, tmp_path, capsys):  # type: ignore[no-untyped-def]
    photos(client, bucket, 5)
    fp32 = ["export", "--model", str(tiny_model), "--output", str(tmp_path / "a")]
    assert main([*fp32, "--check", f"s3://{bucket}/"]) == 2
    assert "--quantize int8" in capsys.readouterr().err
    assert export_int8(tiny_model, tmp_path / "b", "--check", f"s3://{bucket}/") == 2
    assert "holds 5 images" in capsys.readouterr().err


def test_precision_is_part_of_the_build_model(
    bucket, client, onnx: OnnxEmbedder, tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:
    photos(client, bucket, 3)
    assert run_build(get_settings(), client=client, embedder=onnx).embedded == 3
    out = tmp_path / "int8"
    assert export_int8(tiny_model, out) == 0

    # An fp32 index is not served by the int8 export: the vectors would not be comparable.
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(out))
    response = make_api().get("/health")
    assert response.status_code == 503 and f"{tiny_model}#int8" in response.json()["detail"]

    # A build with int8 re-embeds every image, then the int8 export serves it.
    int8 = OnnxEmbedder(source=str(out), cache_dir=tmp_path)
    again = run_build(get_settings(), client=client, embedder=int8)
    assert again.published and again.embedded == 3 and again.reused == 0
    health = make_api().get("/health")
    assert health.status_code == 200 and health.json()["model"] == f"{tiny_model}#int8"
