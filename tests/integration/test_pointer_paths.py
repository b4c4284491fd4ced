"""A pointer is data from S3: its build id never becomes a path outside the index cache, and a
failed load never deletes anything there (issue 21, item 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from image_search.artefacts.loader import read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.errors import IndexNotReadyError
from image_search.serve.service import SearchService
from tests.support.buckets import put
from tests.support.factories import encode, random_image


def victim(tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder outside the cache that a user cares about, and its listing."""
    folder = tmp_path / "precious"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("do not delete")
    (folder / "sub" / "photo.jpg").write_bytes(b"jpeg")
    return folder, sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def point_at(client, bucket: str, build_id: str, *, files: str) -> None:  # type: ignore[no-untyped-def]
    """current.json naming ``build_id``: the published build's files, or keys that are missing."""
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    doc = json.loads(pointer.model_dump_json())
    doc["build_id"] = build_id
    if files == "missing":
        doc = {
            k: (v.replace("/builds/", "/gone/") if k.endswith("_key") and v else v)
            for k, v in doc.items()
        }
    put(client, bucket, "index/current.json", json.dumps(doc).encode())


def refused(service: SearchService) -> str:
    """Why the service serves nothing (a 503 at the API), or "" if it serves a build."""
    try:
        service.current()
    except IndexNotReadyError as exc:
        return str(exc)
    return ""


@pytest.fixture
def published(client, bucket, embedder, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    for i in range(3):
        put(client, bucket, f"animals/{i}.png", encode(random_image(i)))
    monkeypatch.setenv("IMAGE_SEARCH_INDEX_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    run_build(get_settings(), client=client, embedder=embedder)
    return bucket


@pytest.mark.parametrize("files", ["present", "missing"])
@pytest.mark.parametrize("form", ["absolute", "dot-dot", "nested"])
def test_a_pointer_cannot_write_or_delete_outside_the_cache(
    client, published, tmp_path, form: str, files: str
) -> None:
    folder, listing = victim(tmp_path)
    build_id = {
        "absolute": str(folder),
        "dot-dot": "../precious",
        "nested": "20261130T120000000000Z-aaaaaa/../../precious",
    }[form]
    point_at(client, published, build_id, files=files)
    refusal = refused(SearchService(get_settings()))
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == listing
    assert (folder / "notes.txt").read_text() == "do not delete"
    assert "not a build id" in refusal


def test_a_symlinked_cache_folder_is_refused_and_its_target_untouched(
    client, published, tmp_path
) -> None:
    folder, listing = victim(tmp_path)
    pointer = read_pointer(IndexLocation(client, published, "index/"))
    assert pointer is not None
    cache = Path(get_settings().index_cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    os.symlink(folder, cache / pointer.build_id)  # planted by someone else on this host
    refusal = refused(SearchService(get_settings()))
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == listing
    assert "outside" in refusal
