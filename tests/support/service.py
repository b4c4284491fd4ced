"""The search service and its app, built from the environment as the tests set it."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_search.config import get_settings


def point_at_index(env: pytest.MonkeyPatch, *, bucket: str, model: Path, cache: Path) -> None:
    """Settings for a service on ``bucket`` with ``model``, caching under ``cache``."""
    from image_search.serve.service import get_service

    env.setenv("IMAGE_SEARCH_BUCKET", bucket)
    env.setenv("IMAGE_SEARCH_MODEL", str(model))
    env.setenv("IMAGE_SEARCH_INDEX_CACHE_DIR", str(cache / "index-cache"))
    env.setenv("IMAGE_SEARCH_MODEL_CACHE_DIR", str(cache / "model-cache"))
    get_settings.cache_clear()
    get_service.cache_clear()


def make_api():  # type: ignore[no-untyped-def]
    """A TestClient on a fresh app and service built from the current environment."""
    from fastapi.testclient import TestClient

    from image_search.serve.api import create_app
    from image_search.serve.service import get_service

    get_settings.cache_clear()
    get_service.cache_clear()
    return TestClient(create_app())


def wait_for_build(api, build_id: str, *, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Until ``api`` serves ``build_id``: a new build is loaded in the background, off the
    request path. Every answer on the way must be a 200."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        health = api.get("/health")
        assert health.status_code == 200, health.text
        if health.json()["build_id"] == build_id:
            return
        assert time.monotonic() < deadline, f"build {build_id} was not served within {timeout} s"
        time.sleep(0.02)
