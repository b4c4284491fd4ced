"""Models from ``s3://``: downloaded once into the cache, and never written outside it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from image_search.errors import ModelLoadError
from image_search.model import source
from image_search.storage import s3


@pytest.fixture
def model_bucket(client: s3.S3Client) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    for key in ("clip/config.json", "clip/weights.bin", "clip/tokenizer/vocab.json"):
        client.put_object(Bucket=name, Key=key, Body=b"{}")
    return name


def test_an_s3_model_is_downloaded_once_with_its_folders(client, model_bucket, tmp_path) -> None:
    path = Path(source.resolve(f"s3://{model_bucket}/clip", cache_dir=tmp_path, client=client))
    assert path == tmp_path / model_bucket / "clip"
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == [
        "config.json",
        "tokenizer/vocab.json",
        "weights.bin",
    ]
    client.put_object(Bucket=model_bucket, Key="clip/later.bin", Body=b"x")
    source.resolve(f"s3://{model_bucket}/clip", cache_dir=tmp_path, client=client)
    assert not (path / "later.bin").exists()  # the cached copy is reused


@pytest.mark.parametrize(
    "hostile",
    ["clip/../../escaped.txt", "clip//tmp-escaped.txt", "clip/./x/../../../escaped.txt"],
)
def test_a_key_that_would_leave_the_cache_refuses_the_model(
    client, model_bucket, tmp_path, hostile: str
) -> None:
    client.put_object(Bucket=model_bucket, Key=hostile, Body=b"pwned")
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match="refusing"):
        source.resolve(f"s3://{model_bucket}/clip", cache_dir=cache, client=client)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []  # nothing outside the cache, and no half model inside it
    assert not Path("/tmp-escaped.txt").exists()


def test_a_model_url_that_would_leave_the_cache_is_refused(client, tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="refusing"):
        source.resolve("s3://bucket/../../etc", cache_dir=tmp_path, client=client)
