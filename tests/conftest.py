"""Shared fixtures, scoped by cost: S3 server and model once per session, buckets per test."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from image_search.config import get_settings
from image_search.demo.local_s3 import embedded_s3
from image_search.model.torchvision_ops import ensure_importable
from image_search.storage import s3
from tests.support.buckets import published_bucket
from tests.support.factories import save_tiny_clip
from tests.support.service import point_at_index

# moto's server logs every request; keep test output about the product.
logging.getLogger("werkzeug").setLevel(logging.WARNING)
# In the export environment (torchvision installed) before any test imports transformers' image
# processors; nothing where torchvision is absent (the default venv).
ensure_importable()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, reached by boto3 over HTTP via AWS_ENDPOINT_URL_S3."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_REGION", "us-east-1")
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.delenv("AWS_PROFILE", raising=False)
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        with embedded_s3() as endpoint:
            env.setenv("AWS_ENDPOINT_URL_S3", endpoint)
            yield endpoint


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def exported(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CLIP's ONNX export, made once per session through the product's export."""
    from image_search.model.export import export

    target = tmp_path_factory.mktemp("exports") / "tiny-onnx"
    export(str(tiny_model), str(target), cache_dir=tmp_path_factory.mktemp("export-cache"))
    return target


@pytest.fixture(scope="session")
def onnx(exported: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The ONNX embedder over the tiny CLIP's export."""
    from image_search.model.onnx_clip import OnnxEmbedder

    cache = tmp_path_factory.mktemp("onnx-cache")
    return OnnxEmbedder(source=str(exported), batch_size=4, cache_dir=cache).load()


@pytest.fixture(scope="session")
def open_clip_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reduced MobileCLIP 2 (tests/support/open_clip.py) with random weights, exported once
    per session through the product's export; skips where open_clip is absent."""
    from image_search.model.export import export

    support = pytest.importorskip("tests.support.open_clip", reason="make test-open-clip")
    root = tmp_path_factory.mktemp("open-clip")
    name = support.register_reduced(root)
    weights = support.save_random_weights(name, root / "weights.pt")
    export(f"open_clip:{name}", str(root / "export"), cache_dir=root, weights=str(weights))
    return root / "export"


@pytest.fixture(scope="session")
def embedder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from image_search.model.torch_clip import ClipEmbedder

    cache = tmp_path_factory.mktemp("model-cache")
    return ClipEmbedder(source=str(tiny_model), batch_size=8, cache_dir=cache).load()


@pytest.fixture(scope="session")
def synthetic(s3_endpoint: str, tiny_model: Path) -> Callable[[str], str]:
    """``synthetic(kind)``: the bucket of a synthetic build of that index kind, published once
    per session and shared by the modules that only read it (IVF builds take tens of seconds)."""
    from tests.support.synthetic import publish_synthetic

    buckets: dict[str, str] = {}

    def bucket(kind: str) -> str:
        if kind not in buckets:
            buckets[kind], _ = publish_synthetic(kind, model=tiny_model)
        return buckets[kind]

    return bucket


@pytest.fixture
def client(s3_endpoint: str) -> s3.S3Client:
    return s3.make_client()


@pytest.fixture
def bucket(
    s3_endpoint: str,
    client: s3.S3Client,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A fresh, empty bucket, with the settings pointing at it and at the tiny model."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    monkeypatch.setenv("IMAGE_SEARCH_BUCKET", name)
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(tiny_model))
    monkeypatch.setenv("IMAGE_SEARCH_INDEX_CACHE_DIR", str(tmp_path / "index-cache"))
    monkeypatch.setenv("IMAGE_SEARCH_MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    get_settings.cache_clear()
    yield name
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def indexed_bucket(
    s3_endpoint: str, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A bucket with the sample images and a published index, built once per test module."""
    from tests.support.factories import sample_bucket_layout

    return published_bucket(
        sample_bucket_layout(), model=tiny_model, cache=tmp_path_factory.mktemp("cache")
    )


@pytest.fixture
def api_env(indexed_bucket: str, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Settings pointing at the indexed bucket; call ``make_api()`` after setting more."""
    from image_search.serve.service import get_service

    point_at_index(monkeypatch, bucket=indexed_bucket, model=tiny_model, cache=tmp_path)
    yield monkeypatch
    get_settings.cache_clear()
    get_service.cache_clear()


@pytest.fixture
def on_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on Lambda: JSON log lines and EMF metrics on stdout once ``handler`` is (re)loaded."""
    from image_search.observe import logs

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "image-search-test")
    yield
    for service in (logs.API, logs.BUILD):  # stop printing JSON for the tests that follow
        logger = logs.powertools_logger(service)
        logger.clear_state()  # the last invocation's fields
        logging.getLogger().removeHandler(logger.registered_handler)
